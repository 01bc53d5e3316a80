/**
 * compare and repair end to end (docs/protocols.md, "Compare and repair:
 * one consistent point"): ticker, replay and a repair
 * worker run as their own processes; the job is set up with the londiste
 * command line; the worker is asked over NATS. A writer keeps changing the
 * provider tables (rows of its own key range) the whole time, so every
 * compare runs while replay applies new batches: an equal result is only
 * possible when both sides are read at the same point.
 *
 * Differences are planted directly on the subscriber (rows deleted, rows
 * added, values changed: NULL vs '', bytea, json whitespace, jsonb, arrays
 * with NULL, timestamptz by a microsecond, numeric NaN, float -0, text
 * keys whose order differs between collations, odd identifiers, a
 * timestamptz/numeric key compared by Postgres). compare finds exactly
 * those tables; ranged compare locates them; repair dry_run lists exactly
 * them; repair writes fix files; apply fixes them; compare is then equal,
 * also with --lock, and a row-by-row dump of both sides agrees.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient, rawRequest } from "../support/nats.ts";
import { expectOk } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { expectTablesEqual, subscriberTick, waitCaughtUp } from "./e2e-check.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

const ODD = `"Odd ""Schema"""`;
const TWO = `${ODD}."Two Key"`;
const TABLES = ["public.kinds", TWO, "public.tskey", "public.big"];

const DDL = `
create schema ${ODD};
create table public.kinds (id int8 primary key, t text, b bytea, j json, jb jsonb, arr int4[], tarr text[],
                           ts timestamptz, n numeric, f float8, iv interval, flag bool);
create table ${TWO} ("a b" text, "Order" int, "v;" text, primary key ("a b", "Order"));
create table public.tskey (k timestamptz, n numeric, v text, primary key (k, n));
create table public.big (id int primary key, v text not null);
`;

const SEED = `
insert into public.kinds
select g, case when g % 5 = 0 then null when g % 5 = 1 then '' else 'row ' || g || E' ünï \\' "q"' end,
       decode(lpad(to_hex(g), 4, '0'), 'hex'), ('{"a": ' || g || '}')::json, jsonb_build_object('k', g, 'n', null),
       array[g::int4, null], array['x,y', null, 'NULL', ''], '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.000001 s',
       case when g % 7 = 0 then 'NaN'::numeric else g * 1.50 end, case when g % 11 = 0 then 0 else g / 3.0 end,
       g * interval '1 min 1.5 s', g % 2 = 0
  from generate_series(1, 300) g;
insert into ${TWO} select k, o, k || '/' || o
  from unnest(array['Zeta', 'zeta', 'alpha', 'Alpha', 'ä', 'é', 'e', 'Ω', '_', ' ', '']) k, generate_series(1, 3) o;
insert into public.tskey select '2020-01-01 00:00+00'::timestamptz + g * interval '1 hour', g / 10.0, 'v' || g from generate_series(1, 100) g;
insert into public.big select g, md5(g::text) from generate_series(1, 150000) g;
`;

let job: LondisteJob;
let worker: ServiceProcess;
let nc: NatsConnection;
let writer: { stop: () => Promise<number> };

function startWorker(label = "repair-worker"): ServiceProcess {
  return new ServiceProcess(label, process.execPath, ["--import", "tsx", "services/repair/run.ts", job.conf]);
}

interface Outcome {
  name: string;
  ok: boolean;
  status: string;
  message: string;
  tick?: number;
  provider_rows?: number;
  subscriber_rows?: number;
  inserts?: number;
  updates?: number;
  deletes?: number;
  statements?: string[];
  file?: string;
  applied?: { tick: number; inserts: number; updates: number; deletes: number };
  ranges?: Array<{ after: string[] | null; up_to: string[] | null; provider_rows: number; subscriber_rows: number }>;
  provider?: { rows: number; checksum: string };
  subscriber?: { rows: number; checksum: string };
}

async function ask(command: "compare" | "repair", body: Record<string, unknown>, timeoutMs = 50_000): Promise<Outcome[]> {
  const reply = (await rawRequest(nc, `${job.subjectPrefix}.londiste.${job.jobName}.${command}`, JSON.stringify(body), timeoutMs)) as {
    result?: Outcome[];
    error?: { code: string; message: string };
  };
  if (reply.error) throw new Error(`${command} failed: ${reply.error.code}: ${reply.error.message}`);
  return reply.result!;
}

const byName = (outcomes: Outcome[]) => new Map(outcomes.map((o) => [o.name, o]));

/**
 * Changes on the provider all the time, on keys the planted differences never touch: inserts,
 * updates and deletes in several tables per transaction.
 */
function startWriter(url: string): { stop: () => Promise<number> } {
  const client = new pg.Client({ connectionString: url, application_name: "writer" });
  let stopped = false;
  let txns = 0;
  const done = (async () => {
    await client.connect();
    let n = 0;
    while (!stopped) {
      n++;
      const id = 100_000 + (n % 400);
      await client.query("begin");
      await client.query(
        `insert into public.kinds (id, t, b, j, jb, arr, ts, n, f) values ($1, $2, '\\x01', '{"w": 1}', '{"w": [1, null]}', '{1,NULL}', now(), 'NaN', -0.0)
         on conflict (id) do update set t = excluded.t || '+', n = kinds.n + 1, ts = now(), f = random()`,
        [id, `w${n}`],
      );
      if (n % 3 === 0) await client.query("delete from public.kinds where id = $1", [100_000 + ((n * 7) % 400)]);
      await client.query(`insert into ${TWO} values ($1, $2, 'w') on conflict ("a b", "Order") do update set "v;" = ${TWO}."v;" || '.'`, [
        `w ${n % 50}`,
        n % 7,
      ]);
      await client.query("update public.big set v = v || 'x' where id = $1", [30_000]);
      await client.query("insert into public.big values ($1, 'w') on conflict (id) do update set v = 'w' || $1", [20_000 + (n % 500) + 1]);
      await client.query(n % 10 === 0 ? "rollback" : "commit");
      txns++;
      await new Promise((r) => setTimeout(r, 5));
    }
    await client.end();
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return txns;
    },
  };
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "repcmp" });
  await job.startReplay().waitForLog("serving admin commands on NATS");
  await installJob(job);
  await job.provider.query(DDL);
  await job.subscriber.query(DDL);
  await job.provider.query(SEED);
  await job.subscriber.query(SEED);
  expectOk(await job.londiste("provider", "add", ...TABLES));
  expectOk(await job.londiste("subscriber", "add", "--expect-sync", ...TABLES));
  worker = startWorker();
  await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
  nc = await connectNatsClient(natsUrl());
  writer = startWriter(job.provider.url);
});

afterAll(async () => {
  await writer?.stop().catch(() => {});
  await nc?.close();
  await job?.drop();
});

describe("compare and repair while the provider takes writes", () => {
  it("compare: every table equal at one consistent point; no hold left behind", async () => {
    await waitFor(async () => (await subscriberTick(job)) !== null, { what: "replay to apply a batch" });
    const outcomes = await ask("compare", {});
    expect(outcomes.map((o) => [o.name, o.status])).toEqual(TABLES.map((t) => [t, "equal"]));
    const ticks = new Set(outcomes.map((o) => o.tick));
    expect(ticks.size).toBe(1);
    expect(outcomes[0]!.provider!.rows).toBeGreaterThanOrEqual(300);
    const holds = await job.subscriber.query("select * from londiste.replay_hold");
    expect(holds.rows).toEqual([]);
    // The tick was made at the provider snapshot and replay went on past it.
    const tick = outcomes[0]!.tick!;
    await waitFor(async () => ((await subscriberTick(job)) ?? 0) > tick, { what: `replay to go past tick ${tick}` });
  });

  it("planted differences: compare finds them, ranged compare locates them, dry_run lists exactly them, apply fixes them", async () => {
    await job.subscriber.query(`
      delete from public.kinds where id = 5;
      insert into public.kinds (id, t) values (999999999, 'only on the subscriber');
      update public.kinds set t = null where id = 6;                        -- '' on the provider
      update public.kinds set b = '\\x00', j = '{"a":8}' where id = 8;      -- json whitespace differs
      update public.kinds set n = 'NaN', arr = '{9,NULL,NULL}' where id = 9;
      update public.kinds set ts = ts + interval '1 microsecond' where id = 10;
      update public.kinds set f = '-0' where id = 11;                       -- 0 on the provider
      update public.kinds set jb = '{"k": 12, "n": 0}', tarr = null where id = 12;
      delete from ${TWO} where "a b" = 'Zeta' and "Order" = 1;
      insert into ${TWO} values ('zeta', 9, 'extra'), ('ä', 0, 'extra');
      update ${TWO} set "v;" = null where "a b" = 'é' and "Order" = 2;
      delete from public.tskey where n = 0.5;
      update public.tskey set v = 'changed' where n = 7.0;
      insert into public.tskey values ('2020-01-01 00:00:00.000001+00', 0.1, 'extra');
      update public.big set v = 'changed' where id in (1234, 15000);
      delete from public.big where id = 19999;
    `);

    const compared = byName(await ask("compare", {}));
    for (const t of TABLES) expect(compared.get(t)!.status, t).toBe("differ");
    expect(compared.get("public.kinds")!.provider!.rows).toBe(compared.get("public.kinds")!.provider!.rows);
    expect(compared.get("public.big")!.message).toContain("Results do not match!");

    // Ranged: the three planted rows of big are located in small ranges.
    const ranged = byName(await ask("compare", { tables: ["public.big"], ranged: true, leaf_rows: 50, fanout: 8 }));
    const ranges = ranged.get("public.big")!.ranges!;
    expect(ranges.length).toBeGreaterThanOrEqual(3);
    expect(ranges.length).toBeLessThanOrEqual(6);
    for (const id of [1234, 15000, 19999]) {
      const hit = ranges.find((r) => (r.after === null || Number(r.after[0]) < id) && (r.up_to === null || id <= Number(r.up_to[0])));
      expect(hit, `a range holds id ${id}`).toBeDefined();
      expect(Math.max(hit!.provider_rows, hit!.subscriber_rows)).toBeLessThanOrEqual(50);
    }

    // dry_run: exactly the planted differences.
    const dry = byName(await ask("repair", { dry_run: true }));
    const kinds = dry.get("public.kinds")!;
    expect([kinds.inserts, kinds.updates, kinds.deletes]).toEqual([1, 6, 1]);
    const keyOf = (s: string) => /"id" = '(\d+)'::bigint/.exec(s)?.[1] ?? /values \('(\d+)'::bigint/.exec(s)?.[1];
    expect(kinds.statements!.map((s) => `${s.split(" ")[0]} ${keyOf(s)}`).sort()).toEqual(
      ["insert 5", "delete 999999999", "update 6", "update 8", "update 9", "update 10", "update 11", "update 12"].sort(),
    );
    expect(kinds.statements!.find((s) => s.includes("'6'::bigint"))).toBe(`update only public.kinds set "t" = ''::text where "id" = '6'::bigint;`);
    expect(kinds.statements!.find((s) => s.includes("'11'::bigint"))).toBe(`update only public.kinds set "f" = '0'::double precision where "id" = '11'::bigint;`);
    const two = dry.get(TWO)!;
    expect([two.inserts, two.updates, two.deletes]).toEqual([1, 1, 2]);
    expect(two.statements).toEqual([
      // Bytewise key order: 'Zeta' < 'zeta' < 'ä' < 'é'.
      `insert into ${TWO} ("a b", "Order", "v;") values ('Zeta'::text, '1'::integer, 'Zeta/1'::text);`,
      `delete from only ${TWO} where "a b" = 'zeta'::text and "Order" = '9'::integer;`,
      `delete from only ${TWO} where "a b" = 'ä'::text and "Order" = '0'::integer;`,
      `update only ${TWO} set "v;" = 'é/2'::text where "a b" = 'é'::text and "Order" = '2'::integer;`,
    ]);
    const ts = dry.get("public.tskey")!;
    expect([ts.inserts, ts.updates, ts.deletes]).toEqual([1, 1, 1]);
    expect(ts.statements![0]).toBe(
      `delete from only public.tskey where "k" = '2020-01-01 00:00:00.000001+00'::timestamp with time zone and "n" = '0.1'::numeric;`,
    );
    const big = dry.get("public.big")!;
    expect([big.inserts, big.updates, big.deletes]).toEqual([1, 2, 0]);
    for (const o of dry.values()) expect(o.file).toBeUndefined();
    expect(existsSync(join(job.dir, "fix.public.kinds.sql"))).toBe(false);

    // Fix files: one per differing table, the same statements after a header.
    const filed = byName(await ask("repair", { dir: job.dir }));
    const file = filed.get("public.kinds")!.file!;
    expect(file).toBe(join(job.dir, "fix.public.kinds.sql"));
    const statements = readFileSync(file, "utf8").split("\n").filter((l) => /^(insert|update|delete) /.test(l));
    expect(statements.sort()).toEqual([...kinds.statements!].sort());
    expect(filed.get("public.kinds")!.message).toMatch(/^finished public\.kinds: src: \d+ rows, dst: \d+ rows, missed: 1 inserts, 6 updates, 1 deletes; /);
    // `"Odd ""Schema"""."Two Key"`: quotes dropped, the space made `_`, a hash of the real name added.
    expect(filed.get(TWO)!.file).toMatch(new RegExp(`^${job.dir}/fix\\.Odd_Schema\\.Two_Key-[0-9a-f]{6}\\.sql$`));
    expect(existsSync(filed.get(TWO)!.file!)).toBe(true);

    // Apply, then compare: equal; the files now hold what was applied.
    const applied = byName(await ask("repair", { apply: true, dir: job.dir }));
    for (const t of TABLES) expect(applied.get(t)!.status, `${t}: ${applied.get(t)!.message}`).toBe("repaired");
    expect(applied.get("public.kinds")!.applied).toMatchObject({ inserts: 1, updates: 6, deletes: 1 });
    expect(applied.get(TWO)!.applied).toMatchObject({ inserts: 1, updates: 1, deletes: 2 });
    const after = await ask("compare", {});
    expect(after.map((o) => [o.name, o.status])).toEqual(TABLES.map((t) => [t, "equal"]));
    expect((await job.subscriber.query("select * from londiste.replay_hold")).rows).toEqual([]);

    // A second repair finds nothing and removes the old fix files.
    const again = byName(await ask("repair", { dir: job.dir }));
    for (const t of TABLES) expect(again.get(t)!.status).toBe("equal");
    expect(existsSync(join(job.dir, "fix.public.kinds.sql"))).toBe(false);
  });

  it("--lock: the original method finds the same and releases the table", async () => {
    await job.subscriber.query("update public.big set v = 'lock test' where id = 77");
    const outcomes = byName(await ask("compare", { lock: true }));
    expect(outcomes.get("public.big")!.status).toBe("differ");
    for (const t of TABLES.slice(0, 3)) expect(outcomes.get(t)!.status).toBe("equal");
    expect((await job.provider.query("select 1 from pg_locks where locktype = 'relation' and mode = 'ShareLock' and database = (select oid from pg_database where datname = current_database())")).rows).toEqual([]);
    const fixed = byName(await ask("repair", { lock: true, apply: true, tables: ["public.big"], dir: job.dir }));
    expect(fixed.get("public.big")!.applied).toMatchObject({ inserts: 0, updates: 1, deletes: 0 });
    expect((await ask("compare", { tables: ["big"] }))[0]!.status).toBe("equal");
  });

  it("after the writer stops, both sides dump the same row by row", async () => {
    const txns = await writer.stop();
    expect(txns).toBeGreaterThan(50);
    await waitCaughtUp(job);
    await expectTablesEqual(job, "public.kinds", ["id"]);
    await expectTablesEqual(job, TWO, ["a b", "Order"]);
    await expectTablesEqual(job, "public.tskey", ["k", "n"]);
    await expectTablesEqual(job, "public.big", ["id"]);
    expect(worker.running).toBe(true);
  });
});
