/**
 * repair --apply on a partitioned table: the rows live only in the
 * partitions, so the fix statements must name the table without `only`
 * (which would silently change nothing), and every fix must change its
 * one row. Ticker, replay and a repair worker run as their own processes;
 * the differences are planted on the subscriber, in both partitions.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient, rawRequest } from "../support/nats.ts";
import { expectOk } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let nc: NatsConnection;

interface Outcome {
  name: string;
  ok: boolean;
  status: string;
  message: string;
  statements?: string[];
  applied?: { tick: number; inserts: number; updates: number; deletes: number };
}

async function ask(command: "compare" | "repair", body: Record<string, unknown>): Promise<Outcome> {
  const reply = (await rawRequest(nc, `${job.subjectPrefix}.londiste.${job.jobName}.${command}`, JSON.stringify(body), 50_000)) as {
    result?: Outcome[];
    error?: { code: string; message: string };
  };
  if (reply.error) throw new Error(`${command} failed: ${reply.error.code}: ${reply.error.message}`);
  return reply.result![0]!;
}

const rows = async (sql: string) => (await job.subscriber.query<{ r: string }>(sql)).rows.map((x) => x.r);

beforeAll(async () => {
  job = await createLondisteJob({ label: "reppart" });
  await job.startReplay().waitForLog("serving admin commands on NATS");
  await installJob(job);
  const ddl = `
    create table public.parted (id int primary key, v text) partition by range (id);
    create table public.parted_low partition of public.parted for values from (0) to (1000);
    create table public.parted_high partition of public.parted for values from (1000) to (2000);
    insert into public.parted select g, 'v' || g from generate_series(1, 1990, 10) g;`;
  await job.provider.query(ddl);
  await job.subscriber.query(ddl);
  expectOk(await job.londiste("provider", "add", "public.parted"));
  expectOk(await job.londiste("subscriber", "add", "--expect-sync", "public.parted"));
  const worker = new ServiceProcess("repair-worker", process.execPath, ["--import", "tsx", "services/repair/run.ts", job.conf]);
  await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
  nc = await connectNatsClient(natsUrl());
  await waitFor(async () => (await ask("compare", { tables: ["parted"] })).status === "equal", { timeoutMs: 30_000, what: "parted equal" });
});

afterAll(async () => {
  await nc?.close();
  await job?.drop();
});

describe("repair of a partitioned table", () => {
  it("dry_run names the table without only; apply fixes the rows in both partitions; compare is then equal", async () => {
    await job.subscriber.query(`
      delete from public.parted where id = 11;                    -- low partition
      update public.parted set v = 'changed' where id = 1501;     -- high partition
      insert into public.parted values (1999, 'only on the subscriber');`);
    expect((await ask("compare", { tables: ["parted"] })).status).toBe("differ");

    const dry = await ask("repair", { tables: ["parted"], dry_run: true });
    expect([...dry.statements!].sort()).toEqual(
      [
        `insert into public.parted ("id", "v") values ('11'::integer, 'v11'::text);`,
        `update public.parted set "v" = 'v1501'::text where "id" = '1501'::integer;`,
        `delete from public.parted where "id" = '1999'::integer;`,
      ].sort(),
    );

    const applied = await ask("repair", { tables: ["parted"], apply: true, dir: job.dir });
    expect(applied.status, applied.message).toBe("repaired");
    expect(applied.applied).toMatchObject({ inserts: 1, updates: 1, deletes: 1 });
    expect(await rows("select id || ':' || v as r from public.parted where id in (11, 1501, 1999) order by id")).toEqual(["11:v11", "1501:v1501"]);
    expect((await ask("compare", { tables: ["parted"] })).status).toBe("equal");
    expect((await job.subscriber.query("select * from londiste.replay_hold")).rows).toEqual([]);
  });
});
