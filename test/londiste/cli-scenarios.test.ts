/**
 * Londiste scenarios end to end (docs/londiste.md, the parts that need no copy),
 * with the ticker and replay as their own OS processes and every admin
 * step a `londiste CONF ...` call: table redirection (--dest-table);
 * `provider remove` drops the table from the subscriber's set and keeps
 * its rows, and a stale 'T' event does not remove a table added after
 * it; sequences follow and never move backwards; TRUNCATE replicated,
 * or not with ignore_truncate; deny-writes / allow-writes; a column added
 * on the provider stops only its table, visibly, until resync; an unknown
 * event type is marked failed and replay goes on; missing, check,
 * fkeys and the listings; unregister; a wrong recorded tick stops replay
 * with "Lost position" until `replay --reset`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestDatabase } from "../support/db.ts";
import { type CliResult, expectOk, show } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { invocation } from "../../shared/cli/invocation.ts";
import { lockConsumerPosition } from "../../shared/londiste/position.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let replay: ServiceProcess;
let quiet: LondisteJob;
let quietReplay: ServiceProcess;

async function setUp(label: string, extraConfig: string[] = []): Promise<[LondisteJob, ServiceProcess]> {
  const j = await createLondisteJob({ label, extraConfig });
  const r = j.startReplay();
  await r.waitForLog("serving admin commands on NATS");
  await installJob(j);
  // A heartbeat table: a row through it proves a batch after the write was applied.
  for (const db of [j.provider, j.subscriber]) await db.query("create table pulse (id serial primary key)");
  expectOk(await j.londiste("provider", "add", "pulse"));
  expectOk(await j.londiste("subscriber", "add", "--expect-sync", "pulse"));
  return [j, r];
}

beforeAll(async () => {
  [[job, replay], [quiet, quietReplay]] = await Promise.all([setUp("lond_cli_scen"), setUp("lond_cli_quiet", ["ignore_truncate = 1"])]);
});

afterAll(async () => {
  await job?.drop();
  await quiet?.drop();
});

interface TableRow {
  table: string;
  state: string | null;
  dest_table: string | null;
  error: string | null;
}

const rowsOf = async (db: TestDatabase, sql: string, params?: unknown[]) => (await db.query(sql, params)).rows;

async function onBoth(j: LondisteJob, sql: string): Promise<void> {
  await j.provider.query(sql);
  await j.subscriber.query(sql);
}

/** Inserts a pulse row on the provider and waits until it is on the subscriber. */
async function pulse(j: LondisteJob = job): Promise<void> {
  const { rows } = await j.provider.query<{ id: number }>("insert into pulse default values returning id");
  const id = rows[0]!.id;
  await waitFor(async () => (await rowsOf(j.subscriber, "select 1 from pulse where id = $1", [id])).length === 1, {
    what: `pulse ${id} on the subscriber`,
  });
}

/** Waits until `sql` returns the same rows on both sides. */
async function waitEqual(j: LondisteJob, sql: string, what: string, subscriberSql = sql): Promise<unknown[]> {
  let expected: unknown[] = [];
  let got: unknown[] = [];
  try {
    await waitFor(
      async () => {
        expected = await rowsOf(j.provider, sql);
        got = await rowsOf(j.subscriber, subscriberSql);
        return JSON.stringify(got) === JSON.stringify(expected);
      },
      { what },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\nprovider: ${JSON.stringify(expected)}\nsubscriber: ${JSON.stringify(got)}`);
  }
  return expected;
}

async function addBoth(j: LondisteJob, ...tables: string[]): Promise<void> {
  expectOk(await j.londiste("provider", "add", ...tables));
  expectOk(await j.londiste("subscriber", "add", "--expect-sync", ...tables));
}

const stateOf = async (j: LondisteJob, table: string) =>
  (await rowsOf(j.subscriber, "select merge_state, last_error from londiste.subscriber_table where table_name = $1", [table]))[0] as
    | { merge_state: string | null; last_error: string | null }
    | undefined;

function expectExit(r: CliResult, code: number): string {
  expect(r.code, show(r)).toBe(code);
  return r.stdout;
}

describe("scenarios on one job", () => {
  it("--dest-table: changes of public.rt land in other.rt2", async () => {
    await job.provider.query("create table rt (id int primary key, v text)");
    await job.subscriber.query("create schema other; create table other.rt2 (id int primary key, v text)");
    expectOk(await job.londiste("provider", "add", "rt"));
    const added = expectOk(await job.londiste("subscriber", "add", "public.rt", "--dest-table", "other.rt2", "--expect-sync"));
    expect(added).toContain("public.rt: added, state ok");

    await job.provider.query("insert into rt values (1, 'a'), (2, 'b'), (3, 'c')");
    await job.provider.query("update rt set v = 'B' where id = 2");
    await job.provider.query("update rt set id = 30 where id = 3");
    await job.provider.query("delete from rt where id = 1");
    await waitEqual(job, "select id, v from rt order by id", "other.rt2 to equal public.rt", "select id, v from other.rt2 order by id");
    expect(await rowsOf(job.subscriber, "select to_regclass('public.rt') as r")).toEqual([{ r: null }]);

    const human = expectOk(await job.londiste("subscriber", "tables"));
    expect(human).toMatch(/^public\.rt\s+ok\s+other\.rt2$/m);
  });

  it("provider remove: the subscriber drops the table from its set and keeps its rows; a stale 'T' does not remove a table added after it", async () => {
    await onBoth(job, "create table gone (id int primary key); create table late (id int primary key)");
    await addBoth(job, "gone");
    await job.provider.query("insert into gone select generate_series(1, 4)");
    await waitEqual(job, "select id from gone order by id", "gone replicated");

    // Hold replay's per-consumer lock so it applies no batch while the provider's table list changes.
    const hold = await job.subscriber.pool.connect();
    try {
      await hold.query("begin");
      await lockConsumerPosition(hold, job.jobName);
      // 'T' = the provider's list now: without late.
      expect(expectOk(await job.londiste("provider", "remove", "gone"))).toBe("gone: removed\n");
      // late joins on both sides before replay reads that 'T'.
      await addBoth(job, "late");
      await job.provider.query("insert into late values (1), (2)");
      await hold.query("commit");
    } finally {
      hold.release();
    }

    await waitFor(async () => (await stateOf(job, "public.gone")) === undefined, { what: "gone dropped from the subscriber's set" });
    await replay.waitForLog("table no longer captured on the provider", { where: (l) => l.table === "public.gone" });
    expect(replay.logs("table no longer captured on the provider").map((l) => l.table)).toEqual(["public.gone"]);
    // The rows stay.
    expect(await rowsOf(job.subscriber, "select id from gone order by id")).toEqual([1, 2, 3, 4].map((id) => ({ id })));
    // late stays in the set, in state ok, and replicates.
    expect((await stateOf(job, "public.late"))?.merge_state).toBe("ok");
    await waitEqual(job, "select id from late order by id", "late replicated");
    await job.provider.query("insert into late values (3)");
    await waitEqual(job, "select id from late order by id", "late still replicating");

    const ptables = await job.londisteJson<string[]>("provider", "tables");
    expect(ptables).not.toContain("public.gone");
    expect(ptables).toContain("public.late");
    // No capture left on the provider: a later write is not queued for the subscriber.
    await job.provider.query("insert into gone values (5)");
    await pulse();
    expect(await rowsOf(job.subscriber, "select count(*)::int as n from gone")).toEqual([{ n: 4 }]);
  });

  it("sequences: provider add-seq + subscriber add-seq; the subscriber follows and never moves backwards", async () => {
    await onBoth(job, "create sequence sq1");
    await job.provider.query("create sequence sq_provider_only");
    const padd = await job.londiste("provider", "add-seq", "sq1", "sq_provider_only", "no_such_seq");
    expect(expectExit(padd, 1)).toBe("sq1: added\nsq_provider_only: added\nno_such_seq: FAILED: seq not found\n");
    expect(expectOk(await job.londiste("provider", "seqs"))).toBe("public.sq1\npublic.sq_provider_only\n");

    const sadd = await job.londiste("subscriber", "add-seq", "sq1", "sq_provider_only", "sq_unknown");
    expect(expectExit(sadd, 1)).toBe(
      [
        "sq1: added",
        "sq_provider_only: FAILED: no such sequence on the subscriber",
        `sq_unknown: FAILED: not registered on the provider: run "${invocation("londiste")} ${job.conf} provider add-seq public.sq_unknown" first`,
        "",
      ].join("\n"),
    );
    expect(expectOk(await job.londiste("subscriber", "seqs"))).toBe("public.sq1\n");

    const lastValue = async (db: TestDatabase) => Number((await rowsOf(db, "select last_value from sq1"))[0].last_value);
    await job.provider.query("select nextval('sq1') from generate_series(1, 7)");
    await pulse();
    await waitFor(async () => (await lastValue(job.subscriber)) === 7, { timeoutMs: 5_000, what: "sq1 = 7 on the subscriber" });

    // Ahead on the subscriber: it stays there.
    await job.subscriber.query("select setval('sq1', 1000)");
    await job.provider.query("select nextval('sq1') from generate_series(1, 5)");
    // The batch that carries the pulse also pushes the sequences (same subscriber transaction).
    await pulse();
    expect(await lastValue(job.subscriber)).toBe(1000);
    // Once the provider passes it, the subscriber follows again.
    await job.provider.query("select setval('sq1', 2500)");
    await pulse();
    await waitFor(async () => (await lastValue(job.subscriber)) === 2500, { timeoutMs: 5_000, what: "sq1 = 2500 on the subscriber" });

    expect(expectOk(await job.londiste("subscriber", "remove-seq", "sq1"))).toBe("sq1: removed\n");
    await job.provider.query("select setval('sq1', 3000)");
    await pulse();
    expect(await lastValue(job.subscriber)).toBe(2500);
  });

  it("TRUNCATE on the provider is replicated", async () => {
    await onBoth(job, "create table tr (id int primary key)");
    await addBoth(job, "tr");
    await job.provider.query("insert into tr select generate_series(1, 5)");
    await waitEqual(job, "select id from tr order by id", "tr rows");
    await job.provider.query("truncate tr");
    await job.provider.query("insert into tr values (100)");
    expect(await waitEqual(job, "select id from tr order by id", "tr truncated then row 100")).toEqual([{ id: 100 }]);
  });

  it("deny-writes refuses local writes while replayed changes (also TRUNCATE) still arrive; allow-writes lifts it", async () => {
    await onBoth(job, "create table dw (id int primary key, v text)");
    await addBoth(job, "dw");
    expect(expectOk(await job.londiste("subscriber", "deny-writes", "dw"))).toBe("dw: writes denied\n");
    expect(expectOk(await job.londiste("subscriber", "deny-writes", "dw"))).toBe("dw: writes denied already\n");

    await expect(job.subscriber.query("insert into dw values (1, 'local')")).rejects.toThrow(/writes are denied on the subscriber/);
    await expect(job.subscriber.query("truncate dw")).rejects.toThrow(/writes are denied on the subscriber/);
    await job.provider.query("insert into dw values (1, 'a'), (2, 'b')");
    await job.provider.query("update dw set v = 'bb' where id = 2");
    await waitEqual(job, "select id, v from dw order by id", "dw replicated under deny-writes");
    await expect(job.subscriber.query("update dw set v = 'local' where id = 1")).rejects.toThrow(/writes are denied/);
    await job.provider.query("truncate dw");
    await job.provider.query("insert into dw values (3, 'c')");
    await waitEqual(job, "select id, v from dw order by id", "dw truncated under deny-writes");

    expect(expectOk(await job.londiste("subscriber", "allow-writes", "dw"))).toBe("dw: writes allowed\n");
    await job.subscriber.query("insert into dw values (50, 'local')");
    expect(await rowsOf(job.subscriber, "select id, v from dw order by id")).toEqual([
      { id: 3, v: "c" },
      { id: 50, v: "local" },
    ]);
    const notThere = await job.londiste("subscriber", "deny-writes", "public.no_such_table");
    expect(expectExit(notThere, 1)).toContain("public.no_such_table: FAILED: no such table");
  });

  it("a column added on the provider after provider add stops only that table, visibly; resync moves it to (none)", async () => {
    await onBoth(job, "create table ce (id int primary key, v text); create table ck (id int primary key, v text)");
    await addBoth(job, "ce", "ck");
    await job.provider.query("insert into ce values (1, 'before'); insert into ck values (1, 'before')");
    await waitEqual(job, "select id, v from ce order by id", "ce before the change");

    await onBoth(job, "alter table ce add column extra text");
    await job.provider.query("begin; insert into ck values (2, 'same batch'); insert into ce values (2, 'after', 'x'); insert into ck values (3, 'after'); commit");
    await waitFor(async () => (await stateOf(job, "public.ce"))?.merge_state === "error", { what: "ce in state error" });
    // The other table keeps replicating, also the rows in the same transaction.
    await waitEqual(job, "select id, v from ck order by id", "ck replicated");
    expect(await rowsOf(job.subscriber, "select id from ce order by id")).toEqual([{ id: 1 }]);
    await job.provider.query("insert into ck values (4, 'later'); insert into ce values (3, 'later', 'y')");
    await waitEqual(job, "select id, v from ck order by id", "ck still replicating");
    expect(await rowsOf(job.subscriber, "select id from ce order by id")).toEqual([{ id: 1 }]);

    const [tablesJson, tablesHuman, statusHuman] = await Promise.all([
      job.londisteJson<TableRow[]>("subscriber", "tables"),
      job.londiste("subscriber", "tables"),
      job.londiste("status"),
    ]);
    const ce = tablesJson.find((t) => t.table === "public.ce")!;
    expect(ce.state).toBe("error");
    expect(ce.error).toContain("columns changed on the provider since the capture was created");
    expect(tablesJson.find((t) => t.table === "public.ck")).toMatchObject({ state: "ok", error: null });
    for (const out of [expectOk(tablesHuman), expectOk(statusHuman)]) {
      expect(out).toMatch(/^public\.ce\s+error\s+-$/m);
      expect(out).toMatch(/^public\.ck\s+ok\s+-$/m);
      expect(out).toMatch(/^error in public\.ce: .*columns changed on the provider since the capture was created/m);
    }
    expect(replay.logs("table stopped: state error").map((l) => l.table)).toContain("public.ce");
    expect(replay.logs("replay failed; retrying")).toEqual([]);

    const resync = await job.londiste("subscriber", "resync", "ce");
    expect(expectOk(resync)).toBe("ce: was error, now (none): it will be copied again\n");
    // (none), or already handed to the copy (replay asks for one at once); the error is gone.
    const after = await stateOf(job, "public.ce");
    expect(after?.last_error).toBeNull();
    expect([null, "in-copy"]).toContain(after?.merge_state);
    expect(expectOk(await job.londiste("subscriber", "tables"))).toMatch(/^public\.ce\s+(\(none\)|in-copy)\s+-$/m);
    // ck is untouched.
    expect((await stateOf(job, "public.ck"))?.merge_state).toBe("ok");
  });

  it("an unknown event type is marked failed ('Unknown operation') and replay carries on", async () => {
    await job.provider.query("select pgq.insert_event($1, 'X', 'mystery payload')", [job.queue]);
    await pulse();
    // Failed events are tagged on the provider after the subscriber commit that made the pulse visible.
    let failed: unknown[] = [];
    await waitFor(async () => {
      failed = await rowsOf(job.provider, "select ev_type, ev_data, ev_failed_reason from pgq.failed_event_list($1, $2)", [job.queue, job.jobName]);
      return failed.length > 0;
    }, { what: "the failed event on the provider" });
    expect(failed).toEqual([{ ev_type: "X", ev_data: "mystery payload", ev_failed_reason: "Unknown operation" }]);
    await pulse();
    expect(replay.running).toBe(true);
  });

  it("subscriber missing, check and fkeys; provider and subscriber listings", async () => {
    await onBoth(job, "create table mt (id int primary key)");
    await onBoth(job, "create table fp (id int primary key); create table fc (id int primary key, pid int references fp (id))");
    await job.provider.query("create sequence mseq");
    expectOk(await job.londiste("provider", "add", "mt", "fp", "fc"));
    expectOk(await job.londiste("provider", "add-seq", "mseq"));

    const missing = expectOk(await job.londiste("subscriber", "missing"));
    expect(missing).toMatch(/^table public\.mt$/m);
    expect(missing).toMatch(/^table public\.fp$/m);
    expect(missing).toMatch(/^seq public\.mseq$/m);
    expect(missing).not.toMatch(/public\.pulse/);
    expect(missing.match(/^table /gm)).toHaveLength(3);

    const check = await job.londiste("subscriber", "check");
    expect(check.stdout).toMatch(/^public\.mt: ok$/m);
    expect(check.stdout).toMatch(/^public\.pulse: ok$/m);
    expect(check.stdout).toContain("public.fc: ok\n  warning: public.fc: foreign keys involve this table");

    const add = await job.londiste("subscriber", "add", "--expect-sync", "fp", "fc");
    expect(expectOk(add)).toContain("fc: added, state ok");
    const fkeys = expectOk(await job.londiste("subscriber", "fkeys"));
    const lines = fkeys.trimEnd().split("\n");
    expect(lines[0]).toBe("-- dropping");
    const creating = lines.indexOf("-- creating");
    const drops = lines.slice(1, creating);
    const creates = lines.slice(creating + 1);
    expect(drops).toEqual(['alter table only public.fc drop constraint "fc_pid_fkey";']);
    // REFERENCES names the table with its schema, so the SQL means the same under any search_path.
    expect(creates).toEqual(['alter table only public.fc add constraint "fc_pid_fkey" FOREIGN KEY (pid) REFERENCES public.fp(id);']);
    // The printed SQL runs, and puts back the same constraint.
    const before = await rowsOf(job.subscriber, "select conname, pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'fc'::regclass and contype = 'f'");
    await job.subscriber.query(drops[0]!);
    expect(await rowsOf(job.subscriber, "select 1 from pg_constraint where conrelid = 'fc'::regclass and contype = 'f'")).toEqual([]);
    await job.subscriber.query(creates[0]!);
    expect(await rowsOf(job.subscriber, "select conname, pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'fc'::regclass and contype = 'f'")).toEqual(before);
    // Replicated rows satisfy the fkey on the subscriber.
    await job.provider.query("insert into fp values (1); insert into fc values (10, 1)");
    await waitEqual(job, "select id, pid from fc order by id", "fc replicated");

    const [ptables, missingAfter] = await Promise.all([
      job.londiste("provider", "tables"),
      job.londisteJson<{ tables: string[]; seqs: string[] }>("subscriber", "missing"),
    ]);
    const provided = expectOk(ptables).trimEnd().split("\n");
    expect(provided).toEqual(expect.arrayContaining(["public.pulse", "public.mt", "public.fp", "public.fc"]));
    expect(provided.indexOf("public.pulse")).toBe(0);
    expect(missingAfter.tables).toEqual(["public.mt"]);
    expect(missingAfter.seqs).toContain("public.mseq");
  });

  it("subscriber unregister resets every table to (none) and unregisters the consumer until subscriber register; their changes are no longer applied", async () => {
    const before = (await rowsOf(job.subscriber, "select table_name as table, merge_state as state from londiste.subscriber_table order by nr")) as TableRow[];
    const ok = before.filter((t) => t.state === "ok").length;
    expect(ok).toBeGreaterThan(3);
    const consumerBefore = await rowsOf(job.provider, "select sub_id from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer where c.co_name = $1", [job.jobName]);
    expect(consumerBefore).toHaveLength(1);
    const r = await job.londisteJson<{ unregistered: boolean; tables_reset: number }>("subscriber", "unregister");
    expect(r.unregistered).toBe(true);
    expect(r.tables_reset).toBeGreaterThanOrEqual(ok);
    expect(r.tables_reset).toBeLessThanOrEqual(before.length);
    const after = await job.londisteJson<TableRow[]>("subscriber", "tables");
    expect(after.map((t) => t.table)).toEqual(before.map((t) => t.table));
    // (none), and not handed to a copy: replay does not register again.
    for (const t of after) {
      expect(t.state, t.table).toBeNull();
      expect(t.error).toBeNull();
    }
    expect(expectOk(await job.londiste("subscriber", "tables"))).toMatch(/^public\.pulse\s+\(none\)\s+-$/m);

    // Replay stays off the queue until "subscriber register": nothing reaches those tables, nothing is copied.
    const { rows } = await job.provider.query<{ id: number }>("insert into pulse default values returning id");
    await waitForTickAfter(job.provider, job.queue, await lastTickId(job.provider, job.queue));
    await replay.waitForLog("unregistered by the operator");
    expect(await rowsOf(job.provider, "select sub_id from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer where c.co_name = $1", [job.jobName])).toEqual([]);
    expect(await rowsOf(job.subscriber, "select 1 from pulse where id = $1", [rows[0]!.id])).toEqual([]);
    expect(await rowsOf(job.subscriber, "select count(*)::int as n from londiste.subscriber_table where merge_state is not null")).toEqual([{ n: 0 }]);
  });
});

describe("a job with ignore_truncate = 1", () => {
  it("TRUNCATE is not replayed, other changes are", async () => {
    await onBoth(quiet, "create table tr (id int primary key)");
    await addBoth(quiet, "tr");
    await quiet.provider.query("insert into tr select generate_series(1, 3)");
    await waitEqual(quiet, "select id from tr order by id", "tr rows");
    await quiet.provider.query("truncate tr");
    await quiet.provider.query("insert into tr values (10)");
    await waitFor(async () => (await rowsOf(quiet.subscriber, "select 1 from tr where id = 10")).length === 1, { what: "row 10" });
    expect(await rowsOf(quiet.subscriber, "select id from tr order by id")).toEqual([1, 2, 3, 10].map((id) => ({ id })));
  });

  it("a wrong recorded tick stops replay with 'Lost position', nothing applied; replay --reset recovers", async () => {
    await onBoth(quiet, "create table lp (id int primary key)");
    await addBoth(quiet, "lp");
    await quiet.provider.query("insert into lp values (1)");
    await waitEqual(quiet, "select id from lp", "lp row 1");

    // Under replay's lock, so no batch in flight overwrites it.
    const hold = await quiet.subscriber.pool.connect();
    try {
      await hold.query("begin");
      await lockConsumerPosition(hold, quiet.jobName);
      const [{ t }] = (await hold.query("select londiste.get_last_tick($1) as t", [quiet.jobName])).rows;
      expect(t).not.toBeNull();
      await hold.query("select londiste.set_last_tick($1, $2)", [quiet.jobName, Number(t) + 1000]);
      await hold.query("commit");
    } finally {
      hold.release();
    }
    const from = quietReplay.lines.length;
    await quiet.provider.query("insert into lp values (2)");
    const line = await quietReplay.waitForLog("replay failed; retrying", { from });
    expect(JSON.stringify(line.err)).toContain("Lost position");
    expect(await rowsOf(quiet.subscriber, "select id from lp order by id")).toEqual([{ id: 1 }]);
    const status = expectOk(await quiet.londiste("status"));
    expect(status).toMatch(/last error: Lost position: the subscriber recorded tick \d+/);
    expect(await rowsOf(quiet.subscriber, "select id from lp order by id")).toEqual([{ id: 1 }]);

    await quietReplay.kill("SIGTERM");
    const again = quiet.startReplay("lond_cli_quiet-replay-reset", ["--reset"]);
    await again.waitForLog("--reset: forgot the subscriber's recorded position");
    await waitEqual(quiet, "select id from lp order by id", "lp row 2 after --reset");
    await quiet.provider.query("insert into lp values (3)");
    await waitEqual(quiet, "select id from lp order by id", "lp row 3 after --reset");
    expect(again.logs("replay failed; retrying")).toEqual([]);
    await again.waitForLog("serving admin commands on NATS");
    const s = await quiet.londisteJson<{ replay: { lastError: string | null }; subscriber_tick: number; last_tick: number }>("status");
    expect(s.replay.lastError).toBeNull();
  });
});
