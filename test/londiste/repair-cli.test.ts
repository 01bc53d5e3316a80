/**
 * compare and repair from the londiste command line (docs/londiste.md,
 * "Commands"): the
 * worker started as `londiste CONF repair-worker`, `compare` exits 0 when
 * every table is equal and 1 when any differs (per-table lines, --json,
 * --ranged), `repair --dry-run` prints the statements, `repair` writes
 * fix files to --dir, `repair --apply` fixes the subscriber, usage errors
 * exit 2 and no worker exits 3.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk, show } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;

describe("londiste CONF compare / repair / repair-worker", () => {
  beforeAll(async () => {
    job = await createLondisteJob({ label: "repcli" });
    await job.startReplay().waitForLog("serving admin commands on NATS");
    await installJob(job);
    const ddl = `create table public.t (id int primary key, v text, j jsonb);
                 create table public."Odd ""T""" ("k k" text primary key, n numeric);`;
    await job.provider.query(ddl);
    await job.subscriber.query(ddl);
    for (const db of [job.provider, job.subscriber]) {
      await db.query(`insert into public.t select g, 'v' || g, jsonb_build_object('g', g) from generate_series(1, 1000) g`);
      await db.query(`insert into public."Odd ""T""" select 'k' || g, g / 3.0 from generate_series(1, 50) g`);
    }
    expectOk(await job.londiste("provider", "add", "public.t", 'public."Odd ""T"""'));
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "public.t", 'public."Odd ""T"""'));
  });

  afterAll(async () => {
    await job?.drop();
  });

  it("no worker: exit 3 and how to start one", async () => {
    const r = await job.londiste("--timeout", "2", "compare");
    expect(r.code, show(r)).toBe(3);
    // Pasteable: `npx londiste` unless londiste is on the PATH.
    expect(r.stderr).toMatch(new RegExp(`start a repair worker with "(npx )?londiste ${job.conf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} repair-worker"`));
  });

  it("compare, repair --dry-run, repair, repair --apply through the command line", async () => {
    const worker = new ServiceProcess("repair-worker", process.execPath, [LONDISTE_LAUNCHER, job.conf, "repair-worker"]);
    await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });

    const equal = await job.londiste("compare");
    expect(equal.code, show(equal)).toBe(0);
    expect(equal.stdout).toBe(`public.t: equal: 1000 rows\npublic."Odd ""T""": equal: 50 rows\n`);

    await job.subscriber.query(`delete from public.t where id = 500; update public."Odd ""T""" set n = 'NaN' where "k k" = 'k7'`);
    const differ = await job.londiste("compare", "--ranged");
    expect(differ.code, show(differ)).toBe(1);
    expect(differ.stdout).toContain("public.t: FAILED: Results do not match! provider 1000 rows, subscriber 999 rows; 1 differing key range(s)");
    const json = JSON.parse((await job.londiste("--json", "compare", "t")).stdout) as Array<{ name: string; status: string; tick: number }>;
    expect(json.map((o) => [o.name, o.status])).toEqual([["public.t", "differ"]]);

    const dry = await job.londiste("repair", "--dry-run");
    expect(dry.code, show(dry)).toBe(0);
    expect(dry.stdout).toContain("public.t: finished public.t: src: 1000 rows, dst: 999 rows, missed: 1 inserts, 0 updates, 0 deletes");
    expect(dry.stdout).toContain(`  insert into public.t ("id", "v", "j") values ('500'::integer, 'v500'::text, '{"g": 500}'::jsonb);`);
    expect(dry.stdout).toContain(`  update only public."Odd ""T""" set "n" = '2.3333333333333333'::numeric where "k k" = 'k7'::text;`);

    const filed = await job.londiste("repair", "--dir", job.dir);
    expect(filed.code, show(filed)).toBe(0);
    expect(readFileSync(join(job.dir, "fix.public.t.sql"), "utf8")).toContain("insert into public.t");
    // Quotes and spaces of the name stay out of the file name; the output says which table it holds.
    const odd = readdirSync(job.dir).filter((f) => f.startsWith("fix.public.Odd"));
    expect(odd).toEqual([expect.stringMatching(/^fix\.public\.Odd_T-[0-9a-f]{6}\.sql$/)]);
    const oddLine = filed.stdout.split("\n").findIndex((l) => l.startsWith(`public."Odd ""T""": `));
    expect(filed.stdout.split("\n")[oddLine + 1]).toBe(`  fix file: ${join(job.dir, odd[0]!)}`);

    const applied = await job.londiste("repair", "--apply", "--dir", job.dir);
    expect(applied.code, show(applied)).toBe(0);
    expect(applied.stdout).toMatch(/public\.t: .*applied at tick \d+: 1 inserts, 0 updates, 0 deletes/);
    expect((await job.londiste("compare")).code).toBe(0);

    const locked = await job.londiste("compare", "--lock", "t");
    expect(locked.code, show(locked)).toBe(0);
  });

  it("usage errors exit 2", async () => {
    for (const args of [
      ["repair", "--apply", "--dry-run"],
      ["compare", "--apply"],
      ["status", "--ranged"],
      ["repair", "--dry-run", "--dir", "/tmp"],
    ]) {
      const r = await job.londiste(...args);
      expect(r.code, `${args.join(" ")}: ${show(r)}`).toBe(2);
    }
  });
});
