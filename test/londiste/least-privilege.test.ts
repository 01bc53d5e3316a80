/**
 * A whole job run with the least privilege (docs/security.md): a private
 * cluster that asks every role for a scram-sha-256 password over TCP, the
 * roles and grants of sql/londiste/roles.sql (run with psql, as an
 * administrator runs it), and each service connecting as its own
 * non-superuser role — the ticker and replay with the password in their
 * config file, the copy and repair workers through the environment
 * overrides. Install, add with copy, replay of I/U/D, sequences, TRUNCATE,
 * compare, repair --apply and deny-writes all work; no password shows up in
 * any log line, reply, error or status output; a missing grant is reported
 * with the grant to add.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl, uniqueName, uniqueSubjectPrefix, urlForDatabase } from "../support/db.ts";
import { findPostgresBin, type LocalPostgres, startLocalPostgres } from "../support/local-postgres.ts";
import { type CliResult, expectOk, runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor, waitForProgress } from "../support/wait.ts";
import { installLondiste } from "../../shared/londiste/install.ts";
import { installPgq } from "../../shared/pgq/install.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

useProcessCleanup();

const run = promisify(execFile);

/** Each role's password: long, random, and easy to look for in any output. */
const secret = (role: string) => `pw-${role}-${randomBytes(9).toString("hex")}`;
const PASSWORDS = {
  postgres: secret("postgres"),
  skytools_ticker: secret("ticker"),
  skytools_replay: secret("replay"),
  skytools_copy: secret("copy"),
  skytools_repair: secret("repair"),
};
type ServiceRole = Exclude<keyof typeof PASSWORDS, "postgres">;

let server: LocalPostgres;
let admin: { provider: pg.Pool; subscriber: pg.Pool };
let port: number;
let dir: string;
let cliConf: string;
const names = { provider: uniqueName("lp_prov"), subscriber: uniqueName("lp_sub") };
const jobName = "lp_job";
const queue = "lp_queue";
const subjectPrefix = uniqueSubjectPrefix("least_priv");
const outputs: CliResult[] = [];
const services: ServiceProcess[] = [];

function dsn(db: "provider" | "subscriber", role: ServiceRole): string {
  return `host=127.0.0.1 port=${port} dbname=${names[db]} user=${role} password=${PASSWORDS[role]}`;
}

/** A [londiste] config; DSNs left out come from the environment. */
function londisteConf(file: string, provider?: string, subscriber?: string): string {
  const path = join(dir, file);
  const lines = ["[londiste]", `job_name = ${jobName}`, `pgq_queue_name = ${queue}`, `nats_url = ${natsUrl()}`,
    `subject_prefix = ${subjectPrefix}`, "loop_delay = 0.2", "copy_lease = 5"];
  if (provider) lines.push(`provider_db = ${provider}`);
  if (subscriber) lines.push(`subscriber_db = ${subscriber}`);
  writeFileSync(path, lines.join("\n") + "\n", { mode: 0o600 });
  return path;
}

function start(label: string, conf: string, command: string, env?: NodeJS.ProcessEnv): ServiceProcess {
  const p = new ServiceProcess(label, process.execPath, [LONDISTE_LAUNCHER, conf, command], env);
  services.push(p);
  return p;
}

async function londiste(...args: string[]): Promise<CliResult> {
  const r = await runPgqadm([cliConf, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });
  outputs.push(r);
  return r;
}

async function psqlRoles(db: "provider" | "subscriber"): Promise<string> {
  const { stdout, stderr } = await run(
    "psql",
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", `side=${db}`, "-v", "tables_owner=app_owner", "-f", join(REPO_ROOT, "sql/londiste/roles.sql"),
      `host=127.0.0.1 port=${port} dbname=${names[db]} user=postgres`],
    { env: { ...process.env, PGPASSWORD: PASSWORDS.postgres } },
  );
  return stdout + stderr;
}

/** The first log line of a service that a missing privilege stopped, if any. */
function deniedLine(): string | undefined {
  for (const p of services) {
    const line = p.output.split("\n").find((l) => /permission denied|must be owner|must be a member/.test(l));
    if (line) return `${p.label}: ${line}`;
  }
  return undefined;
}

/** Owners and ACLs of everything roles.sql touches, on both sides. */
async function privileges(): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const pool of [admin.provider, admin.subscriber]) {
    for (const sql of [
      `select c.oid::regclass::text as rel, c.relowner::regrole::text as owner, c.relacl::text as acl from pg_class c
        where c.relnamespace in ('pgq'::regnamespace, 'londiste'::regnamespace, 'public'::regnamespace) order by 1`,
      "select nspname, nspowner::regrole::text, nspacl::text from pg_namespace order by 1",
      "select datname, datacl::text from pg_database order by 1",
      "select roleid::regrole::text, member::regrole::text from pg_auth_members order by 1, 2",
      "select defaclrole::regrole::text, defaclnamespace::regnamespace::text, defaclobjtype, defaclacl::text from pg_default_acl order by 1, 2, 3",
      "select parname, paracl::text from pg_parameter_acl order by 1",
      "select p.oid::regprocedure::text, p.proowner::regrole::text from pg_proc p where p.pronamespace in ('pgq'::regnamespace, 'londiste'::regnamespace) order by 1",
    ]) {
      out.push((await pool.query(sql)).rows);
    }
  }
  return out;
}

const both = async (sql: string) => {
  await admin.provider.query(sql);
  await admin.subscriber.query(sql);
};

beforeAll(async () => {
  const bin = await findPostgresBin();
  if (!bin) throw new Error("this test needs PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql");
  server = await startLocalPostgres(bin, { superuserPassword: PASSWORDS.postgres });
  port = server.port;
  dir = makeTempDir("least-priv");
  const root = new pg.Client({ connectionString: server.url });
  await root.connect();
  try {
    // The application's tables belong to their own role on both sides, as in production.
    await root.query("create role app_owner nologin");
    for (const db of Object.values(names)) await root.query(`create database ${db}`);
  } finally {
    await root.end();
  }
  admin = {
    provider: new pg.Pool({ connectionString: urlForDatabase(names.provider, server.url), max: 2 }),
    subscriber: new pg.Pool({ connectionString: urlForDatabase(names.subscriber, server.url), max: 2 }),
  };
  // The private cluster stops in afterAll: a client still closing then gets 57P01, which must not crash the run.
  for (const pool of Object.values(admin)) pool.on("error", () => {});
  await both(
    "grant create on schema public to app_owner; set role app_owner; " +
      "create table public.t (id int primary key, v text, n numeric); " +
      "create table public.child (id int primary key, t_id int references public.t (id)); " +
      "create sequence public.s; reset role",
  );
  await admin.provider.query("insert into public.t select g, 'v' || g, g from generate_series(1, 200) g; select setval('public.s', 50)");
  // The administrator's part: roles and grants, twice (it must change nothing the second time), then passwords.
  for (const db of ["provider", "subscriber"] as const) {
    await psqlRoles(db);
    await psqlRoles(db);
  }
  for (const [role, password] of Object.entries(PASSWORDS)) {
    if (role !== "postgres") await admin.provider.query(`alter role ${role} password '${password}'`);
  }
  cliConf = londisteConf("cli.ini", "host=127.0.0.1 dbname=unused", "host=127.0.0.1 dbname=unused");
});

// After useProcessCleanup's own afterAll has killed the services: the cluster goes, also after a failure.
afterAll(async () => {
  await Promise.all(services.map((p) => p.kill("SIGKILL")));
  if (admin) await Promise.all([admin.provider.end(), admin.subscriber.end()]);
  await server?.stop();
}, 120_000);

describe("a job whose services connect as their own non-superuser roles", () => {
  it("the roles exist, none is superuser, and the schemas belong to the owner role", async () => {
    const { rows } = await admin.provider.query<{ rolname: string; rolsuper: boolean; rolcanlogin: boolean }>(
      "select rolname, rolsuper, rolcanlogin from pg_roles where rolname like 'skytools%' order by rolname",
    );
    expect(rows.map((r) => r.rolname)).toEqual(["skytools_copy", "skytools_operator", "skytools_owner", "skytools_repair", "skytools_replay", "skytools_ticker"]);
    expect(rows.every((r) => !r.rolsuper)).toBe(true);
    const owners = await admin.provider.query<{ nspname: string; owner: string }>(
      "select nspname, nspowner::regrole::text as owner from pg_namespace where nspname in ('pgq', 'londiste') order by 1",
    );
    expect(owners.rows).toEqual([{ nspname: "londiste", owner: "skytools_owner" }, { nspname: "pgq", owner: "skytools_owner" }]);
  });

  it("run after a superuser's install, the script gives every object of pgq and londiste to the owner role; without side it fails", async () => {
    const name = uniqueName("lp_late");
    const root = new pg.Client({ connectionString: server.url });
    await root.connect();
    try {
      await root.query(`create database ${name}`);
    } finally {
      await root.end();
    }
    const late = new pg.Pool({ connectionString: urlForDatabase(name, server.url), max: 1 });
    try {
      await installPgq(late);
      await installLondiste(late);
      await late.query("select pgq.create_queue('late'); create table pt (id int primary key); select londiste.provider_add_table('late', 'public.pt')");
      const psql = (extra: string[]) =>
        run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", ...extra, "-f", join(REPO_ROOT, "sql/londiste/roles.sql"), `host=127.0.0.1 port=${port} dbname=${name} user=postgres`], {
          env: { ...process.env, PGPASSWORD: PASSWORDS.postgres },
        });
      await psql(["-v", "side=provider"]);
      const owners = await late.query(
        `select r.rolname as owner, count(*)::int as n from (
           select relowner as o from pg_class where relnamespace in ('pgq'::regnamespace, 'londiste'::regnamespace)
           union all select proowner from pg_proc where pronamespace in ('pgq'::regnamespace, 'londiste'::regnamespace)) x
         join pg_roles r on r.oid = x.o group by 1`,
      );
      expect(owners.rows.map((r) => r.owner)).toEqual(["skytools_owner"]);
      await expect(psql([])).rejects.toThrow("set -v side=provider or -v side=subscriber");
    } finally {
      await late.end();
    }
  });

  it("install, add with copy, replay of I/U/D, sequences, TRUNCATE, compare, repair --apply, deny-writes", async () => {
    // The ticker and replay read their passwords from their config files (mode 0600).
    const tickerConf = writeTickerConfig(dir, { db: dsn("provider", "skytools_ticker"), natsUrl: natsUrl(), subjectPrefix, file: "ticker.ini" });
    chmodSync(tickerConf, 0o600);
    const ticker = startTicker(tickerConf, "lp-ticker");
    services.push(ticker);
    const replay = start("lp-replay", londisteConf("replay.ini", dsn("provider", "skytools_replay"), dsn("subscriber", "skytools_replay")), "replay");
    await replay.waitForLog("serving admin commands on NATS");

    expect(expectOk(await londiste("provider", "install"))).toContain(`queue: ${queue}`);
    expect(expectOk(await londiste("subscriber", "install"))).toContain("installed: true");
    await admin.provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [queue]);
    // Rotation (the ticker truncating event tables the install created) early and often.
    await admin.provider.query("select pgq.set_queue_config($1, 'rotation_period', '2 seconds')", [queue]);
    const installedAt = (await admin.provider.query<{ t: Date }>("select queue_switch_time as t from pgq.queue where queue_name = $1", [queue])).rows[0]!.t;
    // Everything the services created belongs to the owner role, not to whoever ran it.
    const strays = await admin.provider.query(
      `select c.oid::regclass::text as name, c.relowner::regrole::text as owner from pg_class c
        where c.relnamespace in ('pgq'::regnamespace, 'londiste'::regnamespace) and c.relowner <> 'skytools_owner'::regrole`,
    );
    expect(strays.rows).toEqual([]);
    // The administrator's second run: grants on the installed tables.
    for (const db of ["provider", "subscriber"] as const) await psqlRoles(db);

    // The copy and repair workers get their connection strings (and so passwords) from the environment.
    const workerConf = londisteConf("workers.ini");
    const envFor = (role: ServiceRole) => ({ LONDISTE_PROVIDER_DB: dsn("provider", role), LONDISTE_SUBSCRIBER_DB: dsn("subscriber", role) });
    start("lp-copy", workerConf, "copy", envFor("skytools_copy"));
    const repair = start("lp-repair", workerConf, "repair-worker", envFor("skytools_repair"));

    expect(expectOk(await londiste("provider", "add", "public.t", "public.child"))).toBe("public.t: added\npublic.child: added\n");
    expect(expectOk(await londiste("provider", "add-seq", "public.s"))).toContain("public.s: added");
    expect(expectOk(await londiste("subscriber", "add", "public.t", "public.child"))).toContain("public.t: added");
    expect(expectOk(await londiste("subscriber", "add-seq", "public.s"))).toContain("public.s: added");
    const states = async () => ({
      rows: JSON.parse(expectOk(await londiste("--json", "subscriber", "tables"))) as Array<{ table: string; state: string }>,
      denied: deniedLine(),
    });
    const copied = await waitForProgress({
      what: "both tables to be copied and handed over to replay",
      measure: states,
      done: (s) => (s.rows.length === 2 && s.rows.every((r) => r.state === "ok")) || s.denied !== undefined,
    });
    expect(copied.denied).toBeUndefined();
    expect((await admin.subscriber.query("select count(*)::int as n from public.t")).rows[0].n).toBe(200);

    // Replay of INSERT, UPDATE, DELETE, a sequence and a TRUNCATE.
    await admin.provider.query("insert into public.t values (201, 'new', 1); insert into public.child values (1, 201)");
    await admin.provider.query("update public.t set v = 'changed' where id = 2; delete from public.t where id = 3; select nextval('public.s')");
    const caughtUp = async (sql: string, want: unknown) =>
      waitFor(async () => JSON.stringify((await admin.subscriber.query(sql)).rows) === JSON.stringify(want), { timeoutMs: 60_000, what: sql });
    await caughtUp("select id, v from public.t where id in (2, 3, 201) order by id", [{ id: 2, v: "changed" }, { id: 201, v: "new" }]);
    await caughtUp("select last_value::int as v from public.s", [{ v: 51 }]);
    await admin.provider.query("truncate public.child");
    await caughtUp("select count(*)::int as n from public.child", [{ n: 0 }]);

    // compare, then repair --apply of a difference made on the subscriber behind replay's back.
    await repair.waitForLog("serving compare and repair on NATS", { timeoutMs: 60_000 });
    const equal = await londiste("compare");
    expect(equal.code, show(equal)).toBe(0);
    expect(equal.stdout).toContain("public.t: equal: 200 rows");
    await admin.subscriber.query(
      "begin; set local session_replication_role = replica; delete from public.t where id = 10; update public.t set v = 'x' where id = 11; commit",
    );
    const differ = await londiste("compare", "public.t");
    expect(differ.code, show(differ)).toBe(1);
    const applied = await londiste("repair", "--apply", "public.t");
    expect(applied.code, show(applied)).toBe(0);
    expect(applied.stdout).toMatch(/applied at tick \d+: 1 inserts, 1 updates, 0 deletes/);
    expect((await londiste("compare")).code).toBe(0);

    // deny-writes: the table owner's own writes are refused, replay's still apply.
    expect(expectOk(await londiste("subscriber", "deny-writes", "public.t"))).toContain("writes denied");
    await expect(admin.subscriber.query("begin; set local role app_owner; insert into public.t values (999, 'local', 0); commit")).rejects.toThrow(/deny|denied|not allowed|refuse/i);
    await admin.subscriber.query("rollback");
    await admin.provider.query("insert into public.t values (202, 'after deny', 2)");
    await caughtUp("select v from public.t where id = 202", [{ v: "after deny" }]);
    expect(expectOk(await londiste("subscriber", "allow-writes", "public.t"))).toContain("writes allowed");

    // Each service really is its own role, and no session of a service is a superuser's.
    const sessions = async () =>
      (
        await admin.provider.query<{ app: string; role: string; superuser: boolean }>(
          `select distinct a.application_name as app, a.usename::text as role, r.rolsuper as superuser
             from pg_stat_activity a join pg_roles r on r.rolname = a.usename
            where a.usename like 'skytools%' or a.application_name ~ '^(londiste|pgqadm) ' order by 1, 2`,
        )
      ).rows;
    const seen = await waitFor(
      async () => {
        const rows = await sessions();
        const roles = new Set(rows.map((r) => r.role));
        return ["skytools_copy", "skytools_replay", "skytools_ticker"].every((r) => roles.has(r)) ? rows : undefined;
      },
      { timeoutMs: 30_000, what: "sessions of the ticker, replay and the copy worker" },
    );
    expect(seen.filter((r) => r.superuser || !r.role.startsWith("skytools_"))).toEqual([]);

    // The ticker has rotated the queue's tables.
    await waitFor(
      async () => (await admin.provider.query<{ t: Date }>("select queue_switch_time as t from pgq.queue where queue_name = $1", [queue])).rows[0]!.t > installedAt,
      { timeoutMs: 60_000, what: "a rotation of the queue's event tables by the ticker" },
    );
    expect(deniedLine()).toBeUndefined();

    // A missing grant is reported with the grant to add: ownership (dropping a trigger) ...
    await admin.subscriber.query("revoke app_owner from skytools_replay");
    expect(expectOk(await londiste("subscriber", "deny-writes", "public.child"))).toContain("writes denied");
    const notOwner = await londiste("subscriber", "allow-writes", "public.child");
    expect(notOwner.code, show(notOwner)).toBe(1);
    expect(notOwner.stdout + notOwner.stderr).toContain("must be owner of relation child — missing grant: GRANT <the owner of table child> TO skytools_replay");
    await admin.subscriber.query("grant app_owner to skytools_replay");
    expect(expectOk(await londiste("subscriber", "allow-writes", "public.child"))).toContain("writes allowed");
    // ... and the one setting replica mode needs.
    await admin.subscriber.query("revoke set on parameter session_replication_role from skytools_repair");
    await admin.subscriber.query("begin; set local session_replication_role = replica; update public.t set v = 'y' where id = 12; commit");
    const noReplica = await londiste("repair", "--apply", "public.t");
    expect(noReplica.code, show(noReplica)).not.toBe(0);
    expect(noReplica.stdout + noReplica.stderr).toContain("missing grant: GRANT SET ON PARAMETER session_replication_role TO skytools_repair");
    await admin.subscriber.query("grant set on parameter session_replication_role to skytools_repair");
    expect((await londiste("repair", "--apply", "public.t")).code).toBe(0);

    // A wrong password: the worker says so, without the password.
    const wrongPassword = secret("wrong");
    const wrong = start("lp-copy-wrong", londisteConf("wrong.ini"), "copy", {
      LONDISTE_PROVIDER_DB: dsn("provider", "skytools_copy").replace(PASSWORDS.skytools_copy, wrongPassword),
      LONDISTE_SUBSCRIBER_DB: dsn("subscriber", "skytools_copy").replace(PASSWORDS.skytools_copy, wrongPassword),
    });
    await waitFor(() => wrong.output.includes('password authentication failed for user \\"skytools_copy\\"'), {
      timeoutMs: 60_000,
      what: "the worker with a wrong password to say so",
    });
    await wrong.kill("SIGKILL");
    expect(wrong.output.includes(wrongPassword)).toBe(false);

    // A third run of the script changes no privilege, owner or membership.
    const before = await privileges();
    for (const db of ["provider", "subscriber"] as const) await psqlRoles(db);
    expect(await privileges()).toEqual(before);

    // Status, and no password anywhere: service logs, replies, errors, status.
    const status = await londiste("status");
    expect(status.code, show(status)).toBe(0);
    const jsonStatus = await londiste("--json", "status");
    expect(jsonStatus.code, show(jsonStatus)).toBe(0);
    const everything = [...services.map((p) => p.output), ...outputs.map((r) => r.stdout + r.stderr)].join("\n");
    expect(everything.length).toBeGreaterThan(1000);
    for (const password of Object.values(PASSWORDS)) expect(everything.includes(password), `a password in the output`).toBe(false);
  });
});
