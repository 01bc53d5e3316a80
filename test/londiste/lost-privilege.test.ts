/**
 * A privilege replay's role loses on the subscriber is a configuration
 * error, not a data error: the batch stops and is retried, the log says
 * which GRANT is missing, and the table stays `ok` (no `error`, no
 * skipped changes); after the GRANT replay catches up from where it
 * stopped, without a copy (no copy worker runs in this test). Private
 * cluster (the roles are cluster-wide), roles and grants from
 * sql/londiste/roles.sql (docs/security.md), replay connecting as
 * skytools_replay; the lost privileges: INSERT on the table, and SET on
 * session_replication_role. A copy worker (as skytools_copy) that may not
 * INSERT into the table it copies keeps the table in-copy and retries,
 * saying which GRANT is missing, and copies it once granted.
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { findPostgresBin, type LocalPostgres, startLocalPostgres } from "../support/local-postgres.ts";
import { type CliResult, expectOk, runPgqadm, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, SERVICE_START_MS, useProcessCleanup } from "../support/processes.ts";
import { waitFor, waitForProgress } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

useProcessCleanup();

const run = promisify(execFile);
const jobName = "lostpriv_job";
const queue = "lostpriv_q";

let server: LocalPostgres;
let provider: TestDatabase;
let subscriber: TestDatabase;
let conf: string;
let replay: ServiceProcess;
let as: (db: TestDatabase, role: string) => string;
let nextId = 0;

async function roles(db: TestDatabase, side: "provider" | "subscriber"): Promise<void> {
  await run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", `side=${side}`, "-f", join(REPO_ROOT, "sql/londiste/roles.sql"), db.url]);
}

function londiste(...args: string[]): Promise<CliResult> {
  return runPgqadm([conf, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });
}

async function state(): Promise<string | null> {
  const { rows } = await subscriber.query<{ state: string | null }>(
    "select merge_state as state from londiste.subscriber_table where queue_name = $1 and table_name = 'public.t'",
    [queue],
  );
  return rows[0]!.state;
}

async function counts(): Promise<[number, number]> {
  const one = async (db: TestDatabase) => (await db.query<{ n: number }>("select count(*)::int as n from public.t")).rows[0]!.n;
  return [await one(provider), await one(subscriber)];
}

async function insertRows(n: number): Promise<void> {
  await provider.query("insert into public.t select g, 'v' || g from generate_series($1::int, $2::int) g", [nextId + 1, nextId + n]);
  nextId += n;
}

async function caughtUp(): Promise<void> {
  await waitForProgress({ what: "the subscriber to have the provider's rows", measure: counts, done: ([p, s]) => p === s, stallMs: 60_000 });
  const dump = (db: TestDatabase) => db.query("select id, v from public.t order by id").then((r) => r.rows);
  expect(await dump(subscriber)).toEqual(await dump(provider));
}

/**
 * Takes `revoke` away, writes on the provider, sees replay fail the batch twice with the GRANT to add
 * while the table stays ok and nothing of the batch is applied; then grants it back and sees replay catch up.
 */
async function loseAndRegain(revoke: string, grant: string, missingGrant: string): Promise<void> {
  await subscriber.query(revoke);
  const from = replay.lines.length;
  const before = (await counts())[1];
  await insertRows(50);
  const failures = () => replay.lines.slice(from).filter((l) => l.msg === "replay failed; retrying" && JSON.stringify(l.err).includes(missingGrant));
  await waitFor(() => failures().length >= 2, { timeoutMs: 60_000, what: `two failed rounds naming "${missingGrant}"` });
  expect(failures()[0]).toMatchObject({ kind: "privilege" });
  expect(await state()).toBe("ok");
  expect((await counts())[1]).toBe(before);
  expect(replay.logs("table stopped: state error")).toEqual([]);

  await subscriber.query(grant);
  await caughtUp();
  expect(await state()).toBe("ok");
}

beforeAll(async () => {
  const bin = await findPostgresBin();
  if (!bin) throw new Error("this test needs PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql");
  server = await startLocalPostgres(bin);
  provider = await createTestDatabase("lostpriv_p", server.url);
  subscriber = await createTestDatabase("lostpriv_s", server.url);
  for (const db of [provider, subscriber]) await db.query("create table public.t (id int primary key, v text)");
  await roles(provider, "provider");
  await roles(subscriber, "subscriber");

  const dir = makeTempDir("lostpriv");
  const subjectPrefix = uniqueSubjectPrefix("lostpriv");
  as = (db: TestDatabase, role: string) => `host=127.0.0.1 port=${server.port} dbname=${db.name} user=${role}`;
  startTicker(writeTickerConfig(dir, { db: as(provider, "skytools_ticker"), natsUrl: natsUrl(), subjectPrefix, jobName, file: "ticker.ini" }), "lostpriv-ticker");
  conf = join(dir, "londiste.ini");
  writeFileSync(
    conf,
    [
      "[londiste]",
      `job_name = ${jobName}`,
      `provider_db = ${as(provider, "skytools_replay")}`,
      `subscriber_db = ${as(subscriber, "skytools_replay")}`,
      `pgq_queue_name = ${queue}`,
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${subjectPrefix}`,
      "loop_delay = 0.2",
      "",
    ].join("\n"),
  );
  replay = new ServiceProcess("lostpriv-replay", process.execPath, [LONDISTE_LAUNCHER, conf, "replay"]);
  await replay.waitForLog("serving admin commands on NATS", { timeoutMs: SERVICE_START_MS });
  expectOk(await londiste("provider", "install"));
  expectOk(await londiste("subscriber", "install"));
  // The administrator's second run: grants on what the install created.
  await roles(provider, "provider");
  await roles(subscriber, "subscriber");
  await provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [queue]);
  expectOk(await londiste("provider", "add", "public.t"));
  // Both empty: equal already, no copy.
  expectOk(await londiste("subscriber", "add", "--expect-sync", "public.t"));
  await insertRows(100);
  await caughtUp();
}, 240_000);

afterAll(async () => {
  await provider?.drop();
  await subscriber?.drop();
  await server?.stop();
}, 120_000);

describe("replay loses a privilege on the subscriber", () => {
  it("INSERT on the table: the batch is retried, the table stays ok, and after the GRANT it catches up", async () => {
    await loseAndRegain(
      "revoke insert on public.t from skytools_replay",
      "grant insert on public.t to skytools_replay",
      "missing grant: GRANT INSERT ON TABLE t TO skytools_replay",
    );
  });

  it("SET on session_replication_role: the same", async () => {
    await loseAndRegain(
      "revoke set on parameter session_replication_role from skytools_replay",
      "grant set on parameter session_replication_role to skytools_replay",
      "missing grant: GRANT SET ON PARAMETER session_replication_role TO skytools_replay",
    );
  });

  it("the copy worker may not INSERT into the table it copies: in-copy and retried, then copied once granted", async () => {
    await provider.query("create table public.c (id int primary key, v text); insert into public.c select g, 'c' || g from generate_series(1, 500) g");
    // The copy sets indexes aside around its COPY, which only the owner may do; the owner's own INSERT is revoked.
    await subscriber.query(
      "grant create on schema public to skytools_copy; create table public.c (id int primary key, v text); alter table public.c owner to skytools_copy; " +
        "grant select, insert, update, delete, truncate, trigger on public.c to skytools_replay; revoke insert on public.c from skytools_copy",
    );
    await provider.query("grant select, trigger on public.c to skytools_replay; grant select on public.c to skytools_copy");
    const copy = new ServiceProcess("lostpriv-copy", process.execPath, [LONDISTE_LAUNCHER, conf, "copy"], {
      LONDISTE_PROVIDER_DB: as(provider, "skytools_copy"),
      LONDISTE_SUBSCRIBER_DB: as(subscriber, "skytools_copy"),
    });
    expectOk(await londiste("provider", "add", "public.c"));
    expectOk(await londiste("subscriber", "add", "public.c"));
    const missing = "missing grant: GRANT INSERT ON TABLE c TO skytools_copy";
    const failures = () => copy.lines.filter((l) => l.msg === "copy step failed; retrying" && JSON.stringify(l.err).includes(missing));
    await waitFor(() => failures().length >= 2, { timeoutMs: 90_000, what: `two failed copy attempts naming "${missing}"` });
    expect(failures()[0]).toMatchObject({ kind: "privilege", state: "in-copy" });
    const cState = async () =>
      (await subscriber.query<{ s: string | null }>("select merge_state as s from londiste.subscriber_table where table_name = 'public.c'")).rows[0]!.s;
    expect(await cState()).toBe("in-copy");

    await subscriber.query("grant insert on public.c to skytools_copy");
    await waitForProgress({ what: "public.c to reach ok", measure: cState, done: (s) => s === "ok", stallMs: 60_000 });
    const dump = (db: TestDatabase) => db.query("select id, v from public.c order by id").then((r) => r.rows);
    expect(await dump(subscriber)).toEqual(await dump(provider));
    expect(copy.logs("table worker failed")).toEqual([]);
  });
});
