/**
 * The sample NATS server config (deploy/nats/single.conf with its
 * authorization.conf: TLS and three users) on a private nats-server: the
 * ticker, replay, a copy worker and a repair worker run as the service
 * user; the observer can `status`, `watch` and `dashboard` but NATS refuses it
 * `subscriber remove`, `repair --apply` and `pgqadm drop` (exit 4, "not
 * permitted on SUBJECT as observer", at once, not a timeout); the operator
 * runs all of them. The same job checks the service-side limits: max_queues,
 * fix files only inside repair_dir, shell-safe fix-file names, and
 * repair_max_requests.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { freePort } from "../support/local-postgres.ts";
import { natsServerBin } from "../support/nats-server.ts";
import { type CliResult, PGQADM_LAUNCHER, runPgqadm, show } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "../londiste/job.ts";
import type { JobView as DashboardJob } from "../../shared/londiste/status-view.ts";

useProcessCleanup();

const PASSWORDS = { service: "svc-Secret-1", operator: "op-Secret-2", observer: "obs-Secret-3" };
const PREFIX = "skytools"; // what the sample authorization is written for
const JOB = "rolejob";
const QUEUE = "replika";
const HOSTILE = `public."a b;c'd"`;

let dir: string;
let port: number;
let nats: ServiceProcess;
let provider: TestDatabase;
let subscriber: TestDatabase;
const services: ServiceProcess[] = [];
const conf = { ticker: {} as Record<string, string>, londiste: {} as Record<string, string> };

/** A private CA and a server certificate for 127.0.0.1, made with openssl. */
function makeCertificates(tls: string): void {
  mkdirSync(tls);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: tls, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca-key.pem", "-out", "ca.pem");
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server-key.pem", "-out", "server.csr");
  writeFileSync(join(tls, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem");
}

/** A sample config with its placeholders replaced; each replacement must hit, so the sample keeps its shape. */
function adaptSample(name: string, replacements: Array<[string, string]>): string {
  let text = readFileSync(join(REPO_ROOT, "deploy/nats", name), "utf8");
  for (const [from, to] of replacements) {
    expect(text, `${name} should contain ${from}`).toContain(from);
    text = text.split(from).join(to);
  }
  return text;
}

const natsEnv = () => ({
  SKYTOOLS_SERVICE_PASSWORD: PASSWORDS.service,
  SKYTOOLS_OPERATOR_PASSWORD: PASSWORDS.operator,
  SKYTOOLS_OBSERVER_PASSWORD: PASSWORDS.observer,
});

function natsKeys(user: keyof typeof PASSWORDS, withPassword = true): string[] {
  return [
    `nats_url = nats://127.0.0.1:${port}`,
    `nats_user = ${user}`,
    ...(withPassword ? [`nats_password = ${PASSWORDS[user]}`] : []),
    `nats_inbox_prefix = _INBOX.${user}`,
    `nats_tls_ca = ${join(dir, "tls", "ca.pem")}`,
  ];
}

function writeConfigs(): void {
  for (const user of ["service", "operator", "observer"] as const) {
    // The service user's password comes from the environment override, the tools' from the file.
    const withPassword = user !== "service";
    conf.ticker[user] = join(dir, `ticker-${user}.ini`);
    writeFileSync(
      conf.ticker[user],
      ["[pgqadm]", `job_name = ${JOB}`, `db = ${provider.url}`, "loop_delay = 0.1", "max_queues = 2", ...natsKeys(user, withPassword), ""].join("\n"),
    );
    conf.londiste[user] = join(dir, `londiste-${user}.ini`);
    writeFileSync(
      conf.londiste[user],
      [
        "[londiste]",
        `job_name = ${JOB}`,
        `provider_db = ${provider.url}`,
        `subscriber_db = ${subscriber.url}`,
        `pgq_queue_name = ${QUEUE}`,
        "loop_delay = 0.2",
        `repair_dir = ${join(dir, "fixes")}`,
        "repair_max_requests = 1",
        ...natsKeys(user, withPassword),
        "",
      ].join("\n"),
    );
  }
}

const pgqadm = (user: keyof typeof PASSWORDS, ...args: string[]) => runPgqadm([conf.ticker[user]!, ...args]);
const londiste = (user: keyof typeof PASSWORDS, ...args: string[]) =>
  runPgqadm([conf.londiste[user]!, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });

function expectDone(r: CliResult): string {
  expect(r.code, show(r)).toBe(0);
  return r.stdout;
}

const escape = (text: string) => text.replace(/[.$*+?()[\]{}|^\\]/g, "\\$&");

/** Exit 4 and `TOOL: COMMAND: not permitted on SUBJECT as USER[SUFFIX]` on stderr. */
function expectRefused(r: CliResult, tool: string, subject: string, user: string, suffix = ""): void {
  expect(r.code, show(r)).toBe(4);
  expect(r.stderr, show(r)).toMatch(new RegExp(`^${tool}: .*not permitted on ${escape(subject)} as ${user}${escape(suffix)}$`, "m"));
}

function startService(label: string, launcher: string, config: string, command: string): ServiceProcess {
  const section = launcher === LONDISTE_LAUNCHER ? "LONDISTE" : "PGQADM";
  const p = new ServiceProcess(label, process.execPath, [launcher, config, command], { [`${section}_NATS_PASSWORD`]: PASSWORDS.service });
  services.push(p);
  return p;
}

beforeAll(async () => {
  dir = makeTempDir("nats-roles");
  port = await freePort();
  makeCertificates(join(dir, "tls"));
  writeFileSync(join(dir, "authorization.conf"), readFileSync(join(REPO_ROOT, "deploy/nats/authorization.conf")));
  const single = adaptSample("single.conf", [
    ["listen: 127.0.0.1:4222", `listen: 127.0.0.1:${port}`],
    ["http: 127.0.0.1:8222\n", ""],
    ["/etc/nats/tls", join(dir, "tls")],
    ["store_dir: /var/lib/nats-server", `store_dir: ${join(dir, "js")}`],
  ]);
  writeFileSync(join(dir, "single.conf"), single);
  nats = new ServiceProcess("nats-server", natsServerBin(), ["-c", join(dir, "single.conf")], natsEnv());
  await waitFor(
    async () => {
      if (!nats.running) throw new Error(`nats-server exited: ${nats.tail()}`);
      const nc = await connect({ servers: `127.0.0.1:${port}`, user: "observer", pass: PASSWORDS.observer, tls: { caFile: join(dir, "tls", "ca.pem") }, timeout: 1000 });
      await nc.close();
      return true;
    },
    { timeoutMs: 20_000, what: "the private nats-server with the sample config" },
  );
  provider = await createTestDatabase("roles_p");
  subscriber = await createTestDatabase("roles_s");
  const ddl = `create table public.t (id int primary key, v text); create table ${HOSTILE} (id int primary key, v text);`;
  await provider.query(ddl);
  await subscriber.query(ddl);
  await provider.query(`insert into public.t select g, 'v' || g from generate_series(1, 20) g; insert into ${HOSTILE} values (1, 'one')`);
  await subscriber.query(`insert into ${HOSTILE} values (1, 'one')`);
  writeConfigs();
  mkdirSync(join(dir, "fixes"));

  const ticker = startService("ticker", PGQADM_LAUNCHER, conf.ticker.service!, "ticker");
  await ticker.waitForLog("serving admin commands on NATS", { timeoutMs: 60_000 });
  expectDone(await pgqadm("operator", "install"));
  expectDone(await pgqadm("operator", "create", QUEUE));
  startService("replay", LONDISTE_LAUNCHER, conf.londiste.service!, "replay");
  startService("copy", LONDISTE_LAUNCHER, conf.londiste.service!, "copy");
  startService("repair", LONDISTE_LAUNCHER, conf.londiste.service!, "repair-worker");
  await waitFor(async () => (await londiste("operator", "provider", "install")).code === 0, { timeoutMs: 60_000, what: "replay to serve provider install" });
  expectDone(await londiste("operator", "subscriber", "install"));
  expectDone(await londiste("operator", "provider", "add", "public.t", HOSTILE));
  // public.t is copied by the copy worker; the hostile table is already in sync.
  expectDone(await londiste("operator", "subscriber", "add", "public.t"));
  expectDone(await londiste("operator", "subscriber", "add", "--expect-sync", HOSTILE));
}, 240_000);

afterAll(async () => {
  await Promise.all([...services, ...(nats ? [nats] : [])].map((p) => p.kill("SIGKILL")));
  await provider?.drop();
  await subscriber?.drop();
});

describe("NATS roles with the sample server config", () => {
  it("the services, as the service user, copy and replay; the observer watches the state changes and reads status", async () => {
    // The copy worker copies public.t: replay asked it over NATS, and the state changes reach JetStream.
    const watch = new ServiceProcess("watch", process.execPath, [LONDISTE_LAUNCHER, conf.londiste.observer!, "watch", "--all", "--json"]);
    services.push(watch);
    await waitFor(() => watch.output.split("\n").some((l) => l.includes('"table":"public.t"') && l.includes('"to":"ok"')), {
      timeoutMs: 90_000,
      what: "the observer's watch to show public.t reaching ok",
    });
    // Ctrl-C ends it cleanly: closing its consumer needs no more than the observer may.
    expect((await watch.kill("SIGINT")).code, watch.tail()).toBe(0);
    expect(watch.output).not.toMatch(/not permitted|Permissions Violation/);
    await provider.query("insert into public.t values (100, 'after')");
    await waitFor(async () => (await subscriber.query("select 1 from public.t where id = 100")).rows.length === 1, {
      timeoutMs: 60_000,
      what: "replay to apply the insert",
    });

    const status = JSON.parse(expectDone(await londiste("observer", "--json", "status"))) as { tables: Array<{ table: string }> };
    expect(status.tables.map((t) => t.table).sort()).toEqual([HOSTILE, "public.t"].sort());
    const queues = (JSON.parse(expectDone(await pgqadm("observer", "--json", "status"))) as { queues: Array<{ queue: string }> }).queues;
    expect(queues.map((q) => q.queue)).toContain(QUEUE);

    // The dashboard as the observer: status, ping, the stream, tick notices and $SRV.INFO are all permitted.
    const dashboard = new ServiceProcess("dashboard", process.execPath, [LONDISTE_LAUNCHER, conf.londiste.observer!, "dashboard", "--port", "0"]);
    services.push(dashboard);
    const url = (await dashboard.waitForLog(/^dashboard at /, { timeoutMs: 60_000 })).url as string;
    const job = await waitFor(
      async () => {
        const view = (await (await fetch(`${url}api/view`)).json()) as { jobs: DashboardJob[] };
        const j = view.jobs.find((x) => x.job === JOB);
        const t = j?.tables.find((x) => x.table === "public.t");
        const ready = t?.path.endsWith("ok") && j!.lag.length > 0 && j!.lastTick && j!.services.some((s) => s.role === "active") && j!.services.some((s) => s.service === "ticker");
        return ready ? j : undefined;
      },
      { timeoutMs: 60_000, what: `the observer's dashboard to show the job from status, ping, the stream and tick notices:\n${dashboard.tail()}` },
    );
    expect(job.warnings).toEqual([]);
    expect(job.services.map((s) => s.service).sort()).toEqual(["copy", "repair", "replay", "ticker"]);

    // No service lacked a permission, and no password reached a log line.
    for (const p of services) {
      expect(p.output, p.label).not.toMatch(/NATS refused|not permitted|Permissions Violation/);
      for (const secret of Object.values(PASSWORDS)) expect(p.output, p.label).not.toContain(secret);
    }
  });

  it("NATS refuses the observer the admin commands at once (exit 4), and the operator runs them", async () => {
    expectDone(await pgqadm("operator", "create", "scratch"));
    const [remove, repair, drop] = await Promise.all([
      londiste("observer", "subscriber", "remove", "public.t"),
      londiste("observer", "repair", "--apply"),
      pgqadm("observer", "drop", "scratch"),
    ]);
    expectRefused(remove, "londiste", `${PREFIX}.londiste.${JOB}.subscriber.remove`, "observer");
    expectRefused(repair, "londiste", `${PREFIX}.londiste.${JOB}.repair`, "observer");
    expectRefused(drop, "pgqadm", `${PREFIX}.pgqadm.${JOB}.drop`, "observer");
    // A refusal (exit 4), not the command timeout (exit 3, "no service answered").
    expect(remove.stderr + repair.stderr + drop.stderr).not.toMatch(/no service answered/);
    expect((await subscriber.query("select count(*)::int as n from londiste.subscriber_table")).rows[0].n).toBe(2);

    // The operator: a difference planted on the subscriber is repaired, then the table removed, the queue dropped.
    await subscriber.query("delete from public.t where id = 7");
    const repaired = await londiste("operator", "repair", "--apply", "public.t");
    expect(repaired.code, show(repaired)).toBe(0);
    expect(repaired.stdout).toMatch(/public\.t: .*applied at tick \d+: 1 inserts, 0 updates, 0 deletes/);
    expectDone(await londiste("operator", "subscriber", "remove", "public.t"));
    expect(JSON.parse(expectDone(await pgqadm("operator", "--json", "drop", "scratch")))).toEqual({ queue: "scratch", dropped: true });
  });

  it("the cluster samples are valid server configs once their certificates exist", () => {
    for (const node of ["node1.conf", "node2.conf", "node3.conf"]) {
      const text = adaptSample(node, [["/etc/nats/tls", join(dir, "tls")]]);
      writeFileSync(join(dir, node), text);
      const r = spawnSync(natsServerBin(), ["-t", "-c", join(dir, node)], { env: { ...process.env, ...natsEnv() }, encoding: "utf8" });
      expect(r.status, `${node}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout + r.stderr).toContain("is valid");
    }
    // Without the passwords in its environment the server refuses the config, naming the variable.
    const r = spawnSync(natsServerBin(), ["-t", "-c", join(dir, "node1.conf")], { env: { PATH: process.env.PATH }, encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/SKYTOOLS_SERVICE_PASSWORD/);
  });

  it("an observer cannot make a job's stream: watch before replay ever ran says so (exit 4)", async () => {
    const other = join(dir, "other-job.ini");
    writeFileSync(other, readFileSync(conf.londiste.observer!, "utf8").replace(`job_name = ${JOB}`, "job_name = never_ran"));
    const r = await runPgqadm([other, "watch"], { command: [process.execPath, LONDISTE_LAUNCHER] });
    expectRefused(r, "londiste", "$JS.API.STREAM.CREATE.LONDISTE_skytools_never_ran", "observer", "; the job's stream does not exist yet: replay makes it when it starts");
  });

  it("a wrong password is told as such, naming the user", async () => {
    const bad = join(dir, "bad-password.ini");
    writeFileSync(bad, readFileSync(conf.ticker.observer!, "utf8").replace(`nats_password = ${PASSWORDS.observer}`, "nats_password = wrong"));
    const r = await runPgqadm([bad, "status"]);
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toMatch(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: .*as observer: check nats_user and nats_password/);
    expect(r.stderr).not.toContain("wrong");
  });
});

describe("service-side limits", () => {
  it("max_queues: one more queue is refused with a clear error; an existing one is still fine", async () => {
    // replika and scratch exist (max_queues = 2 here).
    expectDone(await pgqadm("operator", "create", "scratch2")).trim();
    const third = await pgqadm("operator", "create", "scratch3");
    expect(third.code, show(third)).toBe(1);
    expect(third.stderr).toMatch(/^pgqadm: create failed \(conflict\): the database holds 2 queues, the most max_queues \(2\) allows: drop one or raise max_queues$/m);
    expectDone(await pgqadm("operator", "create", "scratch2"));
    expect((await provider.query("select count(*)::int as n from pgq.queue")).rows[0].n).toBe(2);
  });

  it("fix files go only inside repair_dir, under shell-safe names, each printed beside its table", async () => {
    const base = join(dir, "fixes");
    mkdirSync(join(base, "sub"));
    mkdirSync(join(dir, "elsewhere"));
    symlinkSync(join(dir, "elsewhere"), join(base, "escape"));
    await subscriber.query(`update ${HOSTILE} set v = 'changed' where id = 1`);

    for (const outside of ["/tmp", "..", "escape", join(dir, "elsewhere")]) {
      const r = await londiste("operator", "repair", "--dir", outside, HOSTILE);
      expect(r.code, `${outside}: ${show(r)}`).toBe(1);
      expect(r.stderr, outside).toMatch(/failed \(bad_request\): directory .* is outside this worker's repair_dir /);
    }
    expect(readdirSync(join(dir, "elsewhere"))).toEqual([]);

    const inside = await londiste("operator", "repair", "--dir", "sub", HOSTILE);
    expect(inside.code, show(inside)).toBe(0);
    const files = readdirSync(join(base, "sub"));
    expect(files).toEqual([expect.stringMatching(/^fix\.public\.a_b_c_d-[0-9a-f]{6}\.sql$/)]);
    const lines = inside.stdout.split("\n");
    const at = lines.findIndex((l) => l.startsWith(`${HOSTILE}: `));
    expect(lines[at + 1], inside.stdout).toBe(`  fix file: ${join(base, "sub", files[0]!)}`);
    expect(readFileSync(join(base, "sub", files[0]!), "utf8")).toContain(`update only ${HOSTILE} set "v" = 'one'::text where "id" = '1'::integer;`);

    // Without --dir: repair_dir itself.
    expect((await londiste("operator", "repair", HOSTILE)).code).toBe(0);
    expect(readdirSync(base).filter((f) => f.startsWith("fix.public.a_b"))).toEqual(files);
  });

  it("repair_max_requests: a request beyond the worker's limit is refused at once (unavailable)", async () => {
    // With replay stopped, a compare waits for it to reach the consistent point: it holds the one slot.
    const replay = services.find((p) => p.label === "replay")!;
    await replay.kill("SIGKILL");
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: `127.0.0.1:${port}`, user: "operator", pass: PASSWORDS.operator, inboxPrefix: "_INBOX.operator", tls: { caFile: join(dir, "tls", "ca.pem") } });
      const progress: Array<{ phase?: string }> = [];
      nc.subscribe(`${PREFIX}.londiste.${JOB}.repair.progress`, { callback: (_e, m) => void progress.push(m.json()) });
      await nc.flush();
      void nc.request(`${PREFIX}.londiste.${JOB}.compare`, JSON.stringify({ tables: [HOSTILE], wait_seconds: 120 }), { timeout: 150_000 }).catch(() => {});
      await waitFor(() => progress.some((p) => p.phase === "started"), { timeoutMs: 30_000, what: "the first compare to start" });
      const second = await londiste("operator", "compare", HOSTILE);
      expect(second.code, show(second)).toBe(1);
      expect(second.stderr).toMatch(/compare failed \(unavailable\): this repair worker \(.+\) runs 1 requests already, the most repair_max_requests allows: try again later/);
    } finally {
      await nc?.close();
    }
  });
});
