/**
 * The londiste command line end to end, as a user runs it
 * (docs/londiste.md, "Setting up a job" and "Commands"): the ticker and the replay service run as their own OS
 * processes, every admin step is a `londiste CONF ...` call answered by
 * replay over NATS. Covers install → add → changes reach the subscriber →
 * status (human and --json); the rules of `provider add` / `subscriber add`
 * (docs/londiste.md, "Commands") with their messages and exit codes (0 done,
 * 1 failed, 2 bad usage, 3 nobody answered); subscriber triggers; and
 * malformed admin requests sent raw over NATS.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient, rawRequest } from "../support/nats.ts";
import { expectOk, type CliResult, runPgqadm, show } from "../support/pgqadm.ts";
import { type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { invocation } from "../../shared/cli/invocation.ts";
import { createLondisteJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let replay: ServiceProcess;

beforeAll(async () => {
  job = await createLondisteJob({ label: "lond_cli_admin" });
  replay = job.startReplay();
  await replay.waitForLog("serving admin commands on NATS");
});

afterAll(async () => {
  await job?.drop();
});

interface TableRow {
  table: string;
  state: string | null;
  dest_table: string | null;
  error: string | null;
}

interface Status {
  job: string;
  registered: boolean;
  lag_s: number | null;
  last_tick: number | null;
  subscriber_tick: number | null;
  provider_installed: boolean;
  subscriber_installed: boolean;
  replay: { role: string; batches: number; changes: number };
  tables: TableRow[];
}

/** Exit 1 and the given text somewhere in stdout+stderr. */
function expectFailure(r: CliResult, text: string | RegExp): void {
  expect(r.code, show(r)).toBe(1);
  if (typeof text === "string") expect(r.stdout + r.stderr, show(r)).toContain(text);
  else expect(r.stdout + r.stderr, show(r)).toMatch(text);
}

const both = async (sql: string) => {
  await job.provider.query(sql);
  await job.subscriber.query(sql);
};

const rowsOf = async (db: LondisteJob["provider"], sql: string) => (await db.query(sql)).rows;

describe("before install", () => {
  it("commands give a clear 'not installed' message; status says so too", async () => {
    const [ptables, stables, padd, sadd, status] = await Promise.all([
      job.londiste("provider", "tables"),
      job.londiste("subscriber", "tables"),
      job.londiste("provider", "add", "public.t"),
      job.londiste("subscriber", "add", "--expect-sync", "public.t"),
      job.londiste("status"),
    ]);
    // the hint is a command line the user can paste: their invocation and config path
    const paste = `(npx )?londiste ${job.conf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
    expectFailure(
      ptables,
      new RegExp(`londiste: provider tables failed \\(conflict\\): londiste is not installed on the provider: run "${paste} provider install" first`),
    );
    expectFailure(stables, "londiste is not installed on the subscriber");
    expectFailure(padd, "londiste is not installed on the provider");
    expectFailure(sadd, "londiste is not installed on the subscriber");
    expect(status.code, show(status)).toBe(0);
    expect(status.stdout).toContain("provider: londiste not installed; subscriber: londiste not installed");
    expect(status.stdout).toContain("consumer not registered on the provider");
    expect(status.stdout).toContain("(no tables)");
  });

  it("usage errors exit 2 without asking the service; no service exits 3", async () => {
    const noService = join(job.dir, "nobody.ini");
    writeFileSync(
      noService,
      ["[londiste]", `job_name = ${job.jobName}`, `provider_db = ${job.provider.url}`, `subscriber_db = ${job.subscriber.url}`,
        `pgq_queue_name = ${job.queue}`, `nats_url = ${natsUrl()}`, `subject_prefix = ${job.subjectPrefix}_nobody`, ""].join("\n"),
    );
    const commandsBefore = replay.lines.filter((l) => typeof l.command === "string").length;
    const [both2, unknown, unknownSub, tooFew, badFlag, destTwo, noConf, absent, help] = await Promise.all([
      job.londiste("subscriber", "add", "--expect-sync", "--skip-truncate", "public.t"),
      job.londiste("frobnicate"),
      job.londiste("subscriber", "frobnicate"),
      job.londiste("provider", "add"),
      job.londiste("provider", "add", "--force", "public.t"),
      job.londiste("subscriber", "add", "a", "b", "--dest-table", "x.y"),
      runPgqadm([join(job.dir, "missing.ini"), "status"], { command: [process.execPath, LONDISTE_LAUNCHER] }),
      runPgqadm([noService, "status"], { command: [process.execPath, LONDISTE_LAUNCHER] }),
      job.londiste("--help"),
    ]);
    expect(both2.code, show(both2)).toBe(2);
    expect(both2.stderr).toContain("--expect-sync and --skip-truncate do not go together");
    expect(unknown.code, show(unknown)).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknownSub.code, show(unknownSub)).toBe(2);
    expect(unknownSub.stderr).toContain('unknown subscriber command "frobnicate"');
    expect(tooFew.code, show(tooFew)).toBe(2);
    expect(tooFew.stderr).toContain("usage: londiste CONFIG provider add TABLE...");
    expect(badFlag.code, show(badFlag)).toBe(2);
    expect(badFlag.stderr).toContain('--force does not apply to "provider add"');
    expect(destTwo.code, show(destTwo)).toBe(2);
    expect(destTwo.stderr).toContain("--dest-table needs exactly one table");
    expect(noConf.code, show(noConf)).toBe(2);
    expect(noConf.stderr).toContain("missing.ini");
    expect(absent.code, show(absent)).toBe(3);
    expect(absent.stderr).toContain(`no service is listening on ${job.subjectPrefix}_nobody.londiste.${job.jobName}.status`);
    expect(absent.stderr).toContain("replay");
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toContain("provider add-seq");
    // None of them reached the job's service.
    expect(replay.lines.filter((l) => typeof l.command === "string").length).toBe(commandsBefore);
  });
});

describe("acceptance: install, add, replicate, status", () => {
  it("provider install, subscriber install, provider add, subscriber add --expect-sync; I/U/D replicate; status shows lag, ticks and ok", async () => {
    await both("create table t (id int primary key, v text)");
    expect(expectOk(await job.londiste("provider", "install"))).toContain(`queue: ${job.queue}`);
    expect(expectOk(await job.londiste("subscriber", "install"))).toContain("installed: true");
    await job.provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [job.queue]);
    // Installing again is harmless.
    expect(expectOk(await job.londiste("provider", "install"))).toContain("queue_created: false");

    expect(expectOk(await job.londiste("provider", "add", "public.t"))).toBe("public.t: added\n");
    expect(expectOk(await job.londiste("provider", "tables"))).toBe("public.t\n");
    expect(expectOk(await job.londiste("subscriber", "add", "--expect-sync", "public.t"))).toMatch(
      /^public\.t: added, state ok \(checked: both sides have 0 rows; contents not compared \("[^"]* compare" does\)\)\n$/,
    );

    await job.provider.query("insert into t select g, 'v' || g from generate_series(1, 5) g");
    await job.provider.query("update t set v = 'changed' where id = 2");
    await job.provider.query("delete from t where id = 3");
    await job.provider.query("insert into t values (6, null)");
    const expected = await rowsOf(job.provider, "select id, v from t order by id");
    expect(expected).toHaveLength(5);
    await waitFor(async () => JSON.stringify(await rowsOf(job.subscriber, "select id, v from t order by id")) === JSON.stringify(expected), {
      what: "t on the subscriber to equal the provider",
    });

    const s = await waitFor(async () => {
      const st = await job.londisteJson<Status>("status");
      return st.subscriber_tick !== null && st.last_tick === st.subscriber_tick ? st : undefined;
    }, { what: "status: the subscriber at the provider's last tick" });
    expect(s.job).toBe(job.jobName);
    expect(s.registered).toBe(true);
    expect(s.provider_installed && s.subscriber_installed).toBe(true);
    expect(typeof s.lag_s).toBe("number");
    expect(s.lag_s!).toBeGreaterThanOrEqual(0);
    expect(s.lag_s!).toBeLessThan(30);
    expect(s.last_tick!).toBeGreaterThan(1);
    expect(s.replay.role).toBe("active");
    expect(s.replay.changes).toBeGreaterThanOrEqual(8);
    expect(s.tables).toEqual([{ table: "public.t", state: "ok", dest_table: null, error: null, copy_worker: null, copy_progress: null }]);
    // The recorded tick is the provider consumer's last tick (completed = the last batch's end tick).
    const [{ last_tick }] = await rowsOf(job.provider, `select last_tick from pgq.get_consumer_info('${job.queue}', '${job.jobName}')`);
    expect(Number(last_tick)).toBe(s.subscriber_tick);

    const human = expectOk(await job.londiste("status"));
    expect(human).toContain(`Job ${job.jobName}: queue ${job.queue}, consumer ${job.jobName}`);
    expect(human).toContain("provider: installed; subscriber: installed");
    expect(human).toMatch(/ lag \d+(\.\d)?s, last seen \S+ ago, provider tick \d+, subscriber tick \d+, pending events \S+/);
    expect(human).toMatch(/replay \S+: active, \d+ batches, \d+ changes since start/);
    expect(human).toMatch(/^public\.t\s+ok\s+-$/m);
  });
});

describe("rules and clear errors", () => {
  it("provider add refuses a table without a primary key, an unknown table and a duplicate; the others still go in", async () => {
    await job.provider.query("create table nopk (id int, v text); create table r_ok (id int primary key)");
    const r = await job.londiste("provider", "add", "nopk", "public.no_such", "r_ok", "public.t");
    expect(r.code, show(r)).toBe(1);
    expect(r.stdout).toBe(
      [
        "nopk: FAILED: the table has no primary key: londiste needs one to replay updates and deletes",
        "public.no_such: FAILED: no such table on the provider",
        "r_ok: added",
        "public.t: FAILED: already registered",
        "",
      ].join("\n"),
    );
    expect(await job.londisteJson<string[]>("provider", "tables")).toEqual(["public.t", "public.r_ok"]);
    // No capture trigger was left on the refused table.
    const [{ n }] = await rowsOf(job.provider, "select count(*)::int as n from pg_trigger where tgrelid = 'nopk'::regclass");
    expect(n).toBe(0);
  });

  it("subscriber add refuses a table not captured on the provider, one missing on the subscriber, and a duplicate", async () => {
    await both("create table r_uncaptured (id int primary key)");
    await job.provider.query("create table r_subless (id int primary key)");
    expectOk(await job.londiste("provider", "add", "r_subless"));
    const r = await job.londiste("subscriber", "add", "--expect-sync", "r_uncaptured", "r_subless", "public.t");
    expect(r.code, show(r)).toBe(1);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(`r_uncaptured: FAILED: not captured on the provider: run "${invocation("londiste")} ${job.conf} provider add public.r_uncaptured" first`);
    expect(lines[1]).toMatch(/^r_subless: FAILED: public\.r_subless: no such table on the subscriber/);
    expect(lines[2]).toBe("public.t: FAILED: already registered");
    expect(lines).toHaveLength(3);
    // --json gives the same per-table outcomes, and exit 1.
    const j = await job.londiste("--json", "subscriber", "add", "--expect-sync", "r_uncaptured");
    expect(j.code, show(j)).toBe(1);
    expect(JSON.parse(j.stdout)).toEqual([{ name: "r_uncaptured", ok: false, message: expect.stringContaining("not captured on the provider") }]);
    const tables = await job.londisteJson<TableRow[]>("subscriber", "tables");
    expect(tables.map((t) => t.table)).toEqual(["public.t"]);
  });

  it("a provider column missing on the subscriber is refused, accepted with --force; an extra subscriber column is fine", async () => {
    await job.provider.query("create table r_lesscols (id int primary key, a text, b text)");
    await job.subscriber.query("create table r_lesscols (id int primary key, a text)");
    await job.provider.query("create table r_extracol (id int primary key, a text)");
    await job.subscriber.query("create table r_extracol (id int primary key, a text, extra text not null default 'dflt')");
    expectOk(await job.londiste("provider", "add", "r_lesscols", "r_extracol"));

    const refused = await job.londiste("subscriber", "add", "--expect-sync", "r_lesscols");
    expectFailure(refused, 'r_lesscols: FAILED: public.r_lesscols: column "b" (text) does not exist on the subscriber (--force adds it anyway)');
    const check = await job.londiste("subscriber", "check");
    expect(check.code, show(check)).toBe(1);
    expect(check.stdout).toContain('public.r_lesscols: FAILED: public.r_lesscols: column "b" (text) does not exist on the subscriber');
    expect(check.stdout).toContain("public.t: ok");
    expect(check.stdout).toContain('public.r_extracol: ok\n  warning: public.r_extracol: extra subscriber column "extra" gets its default');

    const forced = await job.londiste("subscriber", "add", "--force", "--expect-sync", "r_lesscols");
    expect(forced.code, show(forced)).toBe(0);
    expect(forced.stdout).toContain("r_lesscols: added, state ok");
    expect(forced.stdout).toContain('warning: forced: public.r_lesscols: column "b" (text) does not exist on the subscriber');

    const extra = await job.londiste("subscriber", "add", "--expect-sync", "r_extracol");
    expect(extra.code, show(extra)).toBe(0);
    expect(extra.stdout).toContain("r_extracol: added, state ok");
    expect(extra.stdout).toContain('warning: public.r_extracol: extra subscriber column "extra" gets its default');
    await job.provider.query("insert into r_extracol values (1, 'one')");
    await waitFor(async () => (await rowsOf(job.subscriber, "select id, a, extra from r_extracol")).length === 1, { what: "r_extracol row" });
    expect(await rowsOf(job.subscriber, "select id, a, extra from r_extracol")).toEqual([{ id: 1, a: "one", extra: "dflt" }]);

    // Forced in, the missing column is not silently dropped: the table stops with the reason.
    await job.provider.query("insert into r_lesscols values (1, 'a', 'b')");
    await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from londiste.subscriber_table where table_name = 'public.r_lesscols' and merge_state = 'error'")).length > 0, {
      what: "r_lesscols in state error",
    });
    const stopped = (await job.londisteJson<TableRow[]>("subscriber", "tables")).find((t) => t.table === "public.r_lesscols");
    expect(stopped?.state).toBe("error");
    expect(stopped?.error).toMatch(/column "b"/);
    expect(await rowsOf(job.subscriber, "select * from r_lesscols")).toEqual([]);
    expect(expectOk(await job.londiste("subscriber", "tables"))).toMatch(/^public\.r_lesscols\s+error\s+-$[\s\S]*^error in public\.r_lesscols: .*column "b"/m);
  });

  it("a subscriber table with a user trigger is refused; triggers lists it; 'trigger T NAME always' makes it fire on replay", async () => {
    await both("create table r_trig (id int primary key, v text)");
    await job.subscriber.query(`
      create table r_trig_audit (id int, v text);
      create function r_trig_fn() returns trigger language plpgsql as $$
        begin insert into r_trig_audit values (new.id, new.v); return new; end $$;
      create trigger audit_it after insert on r_trig for each row execute function r_trig_fn();`);
    expectOk(await job.londiste("provider", "add", "r_trig"));
    const refused = await job.londiste("subscriber", "add", "--expect-sync", "r_trig");
    expectFailure(refused, "r_trig: FAILED: public.r_trig: the subscriber table has triggers: audit_it");
    const forced = await job.londiste("subscriber", "add", "--expect-sync", "--force", "r_trig");
    expect(forced.code, show(forced)).toBe(0);
    expect(forced.stdout).toContain("forced: public.r_trig: the subscriber table has triggers: audit_it");

    const listed = await job.londisteJson<Array<Record<string, unknown>>>("subscriber", "triggers", "r_trig");
    expect(listed).toEqual([
      { table: "public.r_trig", trigger: "audit_it", kind: "user", mode: "origin", fires_on_replay: false, fires_on_local_writes: true },
    ]);
    expect(expectOk(await job.londiste("subscriber", "triggers", "r_trig"))).toMatch(/^public\.r_trig\s+audit_it\s+user\s+origin\s+-\s+fires$/m);

    // By default replay does not fire it.
    await job.provider.query("insert into r_trig values (1, 'quiet')");
    await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from r_trig where id = 1")).length === 1, { what: "r_trig row 1" });
    expect(await rowsOf(job.subscriber, "select * from r_trig_audit")).toEqual([]);

    const set = await job.londiste("subscriber", "trigger", "r_trig", "audit_it", "always");
    expect(expectOk(set)).toContain("mode: always");
    const [{ tgenabled }] = await rowsOf(job.subscriber, "select tgenabled::text from pg_trigger where tgname = 'audit_it'");
    expect(tgenabled).toBe("A");
    expect((await job.londisteJson<Array<Record<string, unknown>>>("subscriber", "triggers"))).toContainEqual(
      expect.objectContaining({ table: "public.r_trig", trigger: "audit_it", mode: "always", fires_on_replay: true }),
    );
    await job.provider.query("insert into r_trig values (2, 'loud')");
    await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from r_trig where id = 2")).length === 1, { what: "r_trig row 2" });
    expect(await rowsOf(job.subscriber, "select id, v from r_trig_audit")).toEqual([{ id: 2, v: "loud" }]);

    const badMode = await job.londiste("subscriber", "trigger", "r_trig", "audit_it", "sometimes");
    expectFailure(badMode, "londiste: subscriber trigger failed (bad_request): mode must be one of always, replica, origin, disable");
    const noTrigger = await job.londiste("subscriber", "trigger", "r_trig", "nope", "always");
    expectFailure(noTrigger, "subscriber trigger failed (not_found): no trigger nope on public.r_trig");
  });

  it("duplicate adds report 'already registered'; an unknown name in remove/resync fails only for itself", async () => {
    await both("create table r_dup (id int primary key)");
    expectOk(await job.londiste("provider", "add", "r_dup"));
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "r_dup"));
    const [p, s, resync] = await Promise.all([
      job.londiste("provider", "add", "r_dup"),
      job.londiste("subscriber", "add", "--expect-sync", "r_dup"),
      job.londiste("subscriber", "resync", "no_such_table"),
    ]);
    expectFailure(p, "r_dup: FAILED: already registered");
    expectFailure(s, "r_dup: FAILED: already registered");
    expectFailure(resync, "no_such_table: FAILED: not in the subscriber's set");
    const rm = await job.londiste("provider", "remove", "no_such_table");
    expectFailure(rm, "no_such_table: FAILED:");
  });
});

describe("the project's own schemas, the system catalogs and temporary tables are never replicated", () => {
  it("provider add and subscriber add (and -seq) refuse them with the reason; nothing is registered", async () => {
    const add = await job.londiste(
      "provider", "add", "pgq.tick", "londiste.provider_table", "pg_catalog.pg_class", "information_schema.tables", "pg_temp_1.x", "pgq.no_such",
    );
    expect(add.code, show(add)).toBe(1);
    const lines = add.stdout + add.stderr;
    expect(lines).toContain("pgq.tick: FAILED: refused: schema pgq belongs to PgQ itself, whose tables are never replicated");
    expect(lines).toContain("londiste.provider_table: FAILED: refused: schema londiste belongs to londiste itself");
    expect(lines).toContain("pg_catalog.pg_class: FAILED: refused: pg_catalog is a system schema");
    expect(lines).toContain("information_schema.tables: FAILED: refused: information_schema is a system schema");
    expect(lines).toContain("pg_temp_1.x: FAILED: refused: a temporary table lives only in the session that made it");
    expect(lines).toContain("pgq.no_such: FAILED: refused: schema pgq");
    const seq = await job.londiste("provider", "add-seq", "pgq.batch_id_seq");
    expect(seq.stdout + seq.stderr, show(seq)).toContain("refused: schema pgq belongs to PgQ itself");
    const sub = await job.londiste("subscriber", "add", "londiste.subscriber_table");
    expect(sub.stdout + sub.stderr, show(sub)).toContain("londiste.subscriber_table: FAILED: refused: schema londiste belongs to londiste itself");
    const dest = await job.londiste("subscriber", "add", "public.never_added", "--dest-table", "londiste.completed");
    expect(dest.stdout + dest.stderr, show(dest)).toContain("londiste.completed: refused: schema londiste belongs to londiste itself");
    const deny = await job.londiste("subscriber", "deny-writes", "londiste.subscriber_table");
    expect(deny.code, show(deny)).toBe(1);
    expect(deny.stdout + deny.stderr).toContain("londiste.subscriber_table: FAILED: refused: schema londiste belongs to londiste itself");
    const trig = await job.londiste("subscriber", "trigger", "londiste.subscriber_table", "merge_state_write", "disable");
    expect(trig.stderr, show(trig)).toContain("subscriber trigger failed (bad_request): londiste.subscriber_table: refused: schema londiste");
    const { rows: triggers } = await job.subscriber.query(
      "select tgname, tgenabled from pg_trigger where tgrelid = 'londiste.subscriber_table'::regclass and not tgisinternal order by 1",
    );
    expect(triggers).toEqual([{ tgname: "merge_state_write", tgenabled: "A" }]);
    const subSeq = await job.londiste("subscriber", "add-seq", "londiste.x");
    expect(subSeq.stdout + subSeq.stderr, show(subSeq)).toContain("refused: schema londiste");
    const registered = await rowsOf(
      job.provider,
      "select table_name from londiste.provider_table where table_name !~ '^public\\.' union all select seq_name from londiste.provider_seq where seq_name !~ '^public\\.'",
    );
    expect(registered).toEqual([]);
    expect(await rowsOf(job.subscriber, "select table_name from londiste.subscriber_table where table_name !~ '^public\\.'")).toEqual([]);
  });

  it("a temporary table of the session's own is refused too", async () => {
    const client = await job.provider.pool.connect();
    try {
      await client.query("create temporary table tmp_x (id int primary key)");
      const { rows } = await client.query<{ n: string }>("select format('%I.%I', n.nspname, c.relname) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = 'tmp_x'::regclass");
      const tempName = rows[0]!.n;
      const r = await job.londiste("provider", "add", tempName);
      expect(r.stdout + r.stderr, show(r)).toContain(`${tempName}: FAILED: refused: a temporary table lives only in the session that made it`);
    } finally {
      client.release();
    }
  });
});

describe("malformed admin requests sent raw over NATS", () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connectNatsClient(natsUrl());
  });
  afterAll(async () => {
    await nc?.close();
  });

  const subject = (command: string) => `${job.subjectPrefix}.londiste.${job.jobName}.${command}`;
  const expectBadRequest = async (command: string, payload: string | Uint8Array, message: string | RegExp) => {
    const reply = (await rawRequest(nc, subject(command), payload)) as { error?: { code: string; message: string }; result?: unknown };
    expect(reply.error, `${command} ${String(payload).slice(0, 80)} → ${JSON.stringify(reply).slice(0, 300)}`).toBeDefined();
    expect(reply.error!.code).toBe("bad_request");
    if (typeof message === "string") expect(reply.error!.message).toContain(message);
    else expect(reply.error!.message).toMatch(message);
  };

  it("get bad_request error replies, and the service keeps serving", async () => {
    const manyNames = JSON.stringify({ tables: Array.from({ length: 2000 }, (_, i) => `public.t${i}`) });
    const huge = JSON.stringify({ tables: ["x".repeat(70 * 1024)] });
    await Promise.all([
      expectBadRequest("provider.add", '{"tables": ["public.t"', "request is not valid JSON"),
      expectBadRequest("provider.add", '{"tables": ["public.t"], "bogus": 1}', 'unknown field "bogus"'),
      expectBadRequest("provider.add", '{"tables": "public.t"}', "tables must be a list of strings"),
      expectBadRequest("provider.add", '{"tables": [1]}', "tables[0] must be a string"),
      expectBadRequest("provider.add", "{}", "tables is required"),
      expectBadRequest("provider.add", '["public.t"]', "request must be a JSON object"),
      expectBadRequest("provider.add", '{"tables": []}', "name at least one table or sequence"),
      expectBadRequest("provider.add", manyNames, "tables has more than 500 entries"),
      expectBadRequest("provider.add", JSON.stringify({ tables: ["public.a\u0000b"] }), "tables[0] contains a NUL character"),
      expectBadRequest("provider.add", huge, "request is larger than 65536 bytes"),
      expectBadRequest("provider.add", JSON.stringify({ tables: ["y".repeat(301)] }), "longer than 300 characters"),
      expectBadRequest("subscriber.add", '{"tables": ["public.t"], "expect_sync": "yes"}', "expect_sync must be true or false"),
      expectBadRequest("subscriber.add", '{"tables": ["public.t"], "expect_sync": true, "skip_truncate": true}', "do not go together"),
      expectBadRequest("subscriber.add", '{"tables": ["a", "b"], "dest_table": "x.y"}', "--dest-table needs exactly one table"),
      expectBadRequest("subscriber.trigger", '{"table": "public.t", "trigger": "x"}', "mode is required"),
      expectBadRequest("subscriber.add-seq", '{"seqs": {"a": 1}}', "seqs must be a list of strings"),
      expectBadRequest("status", '{"verbose": true}', 'unknown field "verbose"'),
      expectBadRequest("status", '{"__proto__": {"x": 1}}', 'unknown field "__proto__"'),
      // Names that are no (qualified) identifier, on the commands that take one outside a per-name list.
      expectBadRequest("subscriber.triggers", '{"tables": ["a.b.c"]}', "bad name: a.b.c"),
      expectBadRequest("subscriber.triggers", '{"tables": ["\\"unterminated"]}', 'bad name: "unterminated'),
      expectBadRequest("subscriber.trigger", '{"table": "a..b", "trigger": "x", "mode": "always"}', "bad name: a..b"),
    ]);
    // Nothing was added by any of them.
    expect(await job.londisteJson<string[]>("provider", "tables")).not.toContain("public.a\u0000b");
    const names = (await rowsOf(job.provider, "select table_name from londiste.provider_table")).map((r) => r.table_name as string);
    expect(names.filter((n) => /^public\.t\d/.test(n))).toEqual([]);

    // Still serving: raw and through the command line, and replication goes on.
    const status = (await rawRequest(nc, subject("status"), "")) as { result: Status };
    expect(status.result.job).toBe(job.jobName);
    await job.provider.query("insert into t values (1000, 'after junk')");
    await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from t where id = 1000")).length === 1, { what: "row 1000" });
    expect(replay.running).toBe(true);
    expect(replay.logs("command failed").length).toBeGreaterThanOrEqual(10);
  });
});
