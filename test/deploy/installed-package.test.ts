// The product as a user installs it: `npm pack`, the tarball installed into an empty prefix, and
// the ticker, replay, two copy workers, a repair worker and the dashboard run from the installed bins (plain
// node, no tsx, no node_modules of the checkout) with Skytools-style configs that set pidfile
// and logfile. A table is added and copied; /metrics and /readyz answer on every service;
// SIGHUP reloads; `stop` over NATS stops each of them; `pgqadm --sql-dir` points into the
// installed package. Also: a service started through
// `npx londiste CONF replay &` stops when that PID is signalled, instead of running on orphaned.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, SERVICE_START_MS, useProcessCleanup } from "../support/processes.ts";
import { waitFor, waitForProgress } from "../support/wait.ts";

useProcessCleanup();
const run = promisify(execFile);

/** A port nothing listens on right now (the kernel's choice), for a service's metrics_port. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function http(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

let dir: string;
let bin: { pgqadm: string; londiste: string };
let provider: TestDatabase;
let subscriber: TestDatabase;
let tickerConf: string;
let conf: string;
const jobName = "shipjob";
const queue = "shipq";

beforeAll(async () => {
  dir = makeTempDir("installed");
  const packed = await run("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: REPO_ROOT, timeout: 600_000, maxBuffer: 1 << 24 });
  const tarball = join(dir, packed.stdout.trim().split("\n").pop()!);
  const prefix = join(dir, "prefix");
  await run("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", tarball], {
    cwd: dir,
    timeout: 600_000,
    maxBuffer: 1 << 24,
  });
  bin = { pgqadm: join(prefix, "bin", "pgqadm"), londiste: join(prefix, "bin", "londiste") };

  provider = await createTestDatabase("ship_p");
  subscriber = await createTestDatabase("ship_s");
  const prefixSubject = uniqueSubjectPrefix("ship");
  const common = [`nats_url = ${natsUrl()}`, `subject_prefix = ${prefixSubject}`, "command_timeout = 20", `pidfile = ${join(dir, "run", `${jobName}.pid`)}`, `logfile = ${join(dir, "log", `${jobName}.log`)}`];
  tickerConf = join(dir, "ticker.ini");
  writeFileSync(
    tickerConf,
    ["[pgqadm]", "job_name = shipticker", `db = ${provider.url}`, "loop_delay = 0.1", ...common.map((l) => l.replace(`${jobName}.`, "ticker."))].join("\n") + "\n",
  );
  conf = join(dir, "londiste.ini");
  writeFileSync(
    conf,
    ["[londiste]", `job_name = ${jobName}`, `provider_db = ${provider.url}`, `subscriber_db = ${subscriber.url}`, `pgq_queue_name = ${queue}`, "loop_delay = 0.2", ...common].join("\n") + "\n",
  );
  for (const db of [provider, subscriber]) {
    await db.query("create table public.items (id int primary key, name text not null)");
  }
  await provider.query("insert into public.items select g, 'item ' || g from generate_series(1, 5000) g");
}, 900_000);

afterAll(async () => {
  await provider?.drop();
  await subscriber?.drop();
});

/** Runs an installed bin to completion, from a folder outside the checkout. */
async function cli(tool: "pgqadm" | "londiste", ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(bin[tool], args, { cwd: dir, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

async function ok(tool: "pgqadm" | "londiste", ...args: string[]): Promise<string> {
  const r = await cli(tool, ...args);
  expect(r.code, `${tool} ${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}

describe("installed from the packed tarball", () => {
  it("runs every service from the installed bins: copy, metrics, readiness, SIGHUP, stop over NATS", { timeout: 600_000 }, async () => {
    expect(await ok("londiste", "--help")).toMatch(/usage: londiste/);
    expect(await ok("pgqadm", "--help")).toMatch(/usage: pgqadm/);
    // The installed package runs compiled JavaScript: no TypeScript sources, no tsx.
    const installed = join(dir, "prefix", "lib", "node_modules", "skytools-ts");
    expect(existsSync(join(installed, "dist", "services", "replay", "main.js"))).toBe(true);
    expect(existsSync(join(installed, "shared"))).toBe(false);
    expect(existsSync(join(installed, "node_modules", "tsx"))).toBe(false);
    // The SQL files for psql alone: psql -f "$(pgqadm --sql-dir)/pgq/install.sql"
    const sqlDir = (await ok("pgqadm", "--sql-dir")).trim();
    expect(sqlDir).toBe(join(installed, "sql"));
    expect(existsSync(join(sqlDir, "pgq", "install.sql"))).toBe(true);
    expect(existsSync(join(sqlDir, "londiste", "install.sql"))).toBe(true);

    const ports = { ticker: await freePort(), replay: await freePort(), copyA: await freePort(), copyB: await freePort(), repair: await freePort() };
    const start = (label: keyof typeof ports, tool: "pgqadm" | "londiste", args: string[], envKey: string) =>
      new ServiceProcess(`installed-${label}`, bin[tool], args, { [envKey]: String(ports[label]) });
    const ticker = start("ticker", "pgqadm", [tickerConf, "ticker"], "PGQADM_METRICS_PORT");
    const replay = start("replay", "londiste", [conf, "replay"], "LONDISTE_METRICS_PORT");
    const copyA = start("copyA", "londiste", [conf, "copy", "--instance", "a"], "LONDISTE_METRICS_PORT");
    const copyB = start("copyB", "londiste", [conf, "copy", "--instance", "b"], "LONDISTE_METRICS_PORT");
    const repair = start("repair", "londiste", [conf, "repair-worker"], "LONDISTE_METRICS_PORT");
    const all = { ticker, replay, copyA, copyB, repair };
    for (const p of Object.values(all)) await p.waitForLog(/starting|serving/, { timeoutMs: SERVICE_START_MS });
    await ticker.waitForLog("serving admin commands on NATS", { timeoutMs: SERVICE_START_MS });
    await ok("pgqadm", tickerConf, "install");

    // Each service has its own pidfile and logfile, derived from the configured ones.
    const files: Record<keyof typeof all, string> = {
      ticker: "ticker.pid",
      replay: `${jobName}.pid`,
      copyA: `${jobName}.pid.copy.a`,
      copyB: `${jobName}.pid.copy.b`,
      repair: `${jobName}.pid.repair`,
    };
    for (const [name, p] of Object.entries(all)) {
      const pidfile = join(dir, "run", files[name as keyof typeof all]);
      await waitFor(() => existsSync(pidfile), { what: `${pidfile}`, timeoutMs: SERVICE_START_MS });
      expect(readFileSync(pidfile, "utf8").trim(), pidfile).toBe(String(p.pid));
    }
    expect(readdirSync(join(dir, "log")).sort()).toEqual(["shipjob.log", "shipjob.log.copy.a", "shipjob.log.copy.b", "shipjob.log.repair", "ticker.log"]);
    // A second worker with a taken instance name stops at once: one line, no stack trace.
    const twin = await cli("londiste", conf, "copy", "--instance", "a");
    expect(twin.code).toBe(1);
    expect(twin.stderr.trim()).toBe(`copy: pidfile ${join(dir, "run", `${jobName}.pid.copy.a`)} exists and process ${copyA.pid} is running`);

    await ok("londiste", conf, "provider", "install");
    await ok("londiste", conf, "subscriber", "install");
    await provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [queue]);
    await ok("londiste", conf, "provider", "add", "public.items");
    await ok("londiste", conf, "subscriber", "add", "public.items");
    const state = async () => (await subscriber.query<{ s: string | null }>("select merge_state as s from londiste.subscriber_table where table_name = 'public.items'")).rows[0]?.s ?? null;
    await waitForProgress({ what: "public.items to be copied and in sync", measure: state, done: (s) => s === "ok", stallMs: 180_000 });
    await provider.query("update public.items set name = name || ' v2' where id <= 100");
    await waitForProgress({
      what: "the update to reach the subscriber",
      measure: async () => Number((await subscriber.query("select count(*) as n from public.items where name like '% v2'")).rows[0].n),
      done: (n) => n === 100,
    });
    expect(Number((await subscriber.query("select count(*) as n from public.items")).rows[0].n)).toBe(5000);
    const copiedBy = [copyA, copyB].filter((p) => p.logs("handed over: ok").length > 0);
    expect(copiedBy.length, "one of the two copy workers did the copy").toBeGreaterThanOrEqual(1);

    // Health and metrics on every service; the copy workers are on $SRV.
    for (const [name, port] of Object.entries(ports)) {
      expect((await http(port, "/healthz")).status, `${name} /healthz`).toBe(200);
      const ready = await waitFor(async () => {
        const r = await http(port, "/readyz");
        return r.status === 200 ? r : undefined;
      }, { what: `${name} /readyz 200`, timeoutMs: 30_000 });
      expect(JSON.parse(ready.body)).toMatchObject({ ready: true });
      const metrics = (await http(port, "/metrics")).body;
      expect(metrics, `${name} /metrics`).toMatch(/^skytools_database_up\{.*\} 1$/m);
      expect(metrics).toMatch(/^skytools_nats_connected\{.*\} 1$/m);
    }
    const nc = await connect({ servers: natsUrl() });
    try {
      const replies = await nc.requestMany("$SRV.PING.londiste-copy", "", { maxWait: 3000 });
      const ids = new Set<string>();
      // Copy workers of other jobs (other tests on the same NATS) answer too: count this job's.
      for await (const m of replies) {
        const info = m.json() as { id: string; metadata?: { job?: string } };
        if (info.metadata?.job === jobName) ids.add(info.id);
      }
      expect(ids.size).toBe(2);
    } finally {
      await nc.close();
    }
    expect(await ok("londiste", conf, "ping")).toMatch(/instance: /);

    // The dashboard from the installed package: its page and assets (uPlot included) come from the package.
    const dashboard = new ServiceProcess("installed-dashboard", bin.londiste, [conf, "dashboard", "--port", "0"]);
    const url = (await dashboard.waitForLog(/^dashboard at /, { timeoutMs: SERVICE_START_MS })).url as string;
    const port = Number(new URL(url).port);
    for (const path of ["/", "/assets/app.js", "/assets/style.css", "/assets/uPlot.iife.min.js", "/assets/uPlot.min.css"]) {
      const r = await http(port, path);
      expect(r.status, path).toBe(200);
      expect(r.body.length, path).toBeGreaterThan(100);
    }
    await waitFor(async () => (JSON.parse((await http(port, "/api/view")).body) as { jobs: Array<{ job: string; tables: unknown[] }> }).jobs.find((j) => j.job === jobName)?.tables.length === 1, {
      what: "the dashboard to show the job's table",
      timeoutMs: 30_000,
    });
    process.kill(dashboard.pid, "SIGTERM");
    expect((await dashboard.waitForExit(30_000)).code).toBe(0);

    // SIGHUP to the PID of an installed bin reloads its config.
    const before = replay.lines.length;
    process.kill(replay.pid, "SIGHUP");
    await replay.waitForLog("config reloaded", { from: before, timeoutMs: 30_000 });
    const tickerBefore = ticker.lines.length;
    process.kill(ticker.pid, "SIGHUP");
    await ticker.waitForLog("config reloaded", { from: tickerBefore, timeoutMs: 30_000 });
    expect(replay.running && ticker.running).toBe(true);
    // reload over NATS reaches every londiste service.
    await ok("londiste", conf, "reload");
    for (const p of [copyA, copyB, repair]) await p.waitForLog("config reloaded", { timeoutMs: 30_000 });

    // stop over NATS: every service of the job exits 0 after its unit of work, and removes its pidfile.
    await ok("londiste", conf, "stop");
    for (const p of [replay, copyA, copyB, repair]) expect((await p.waitForExit(60_000)).code, p.label).toBe(0);
    await ok("pgqadm", tickerConf, "stop");
    expect((await ticker.waitForExit(60_000)).code).toBe(0);
    expect(readdirSync(join(dir, "run"))).toEqual([]);
    // The logfiles hold the services' JSON lines.
    expect(readFileSync(join(dir, "log", "shipjob.log.copy.a"), "utf8")).toMatch(/"msg":"copy stopped"/);
  });

  it("a replay started with `npx londiste CONF replay &` stops when that PID gets SIGTERM", { timeout: 300_000 }, async () => {
    const npx = new ServiceProcess("npx-replay", "npx", ["londiste", conf, "replay"]);
    await npx.waitForLog("replay starting", { timeoutMs: SERVICE_START_MS * 2 });
    const servicePid = (npx.lines.find((l) => l.msg === "replay starting") as { pid?: number } | undefined)?.pid;
    expect(servicePid, "pino logs the service's own pid").toBeGreaterThan(0);
    expect(servicePid).not.toBe(npx.pid);
    process.kill(npx.pid, "SIGTERM");
    await npx.waitForExit(30_000);
    const alive = () => {
      try {
        process.kill(servicePid!, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(() => !alive(), { what: `the replay process ${servicePid} to stop`, timeoutMs: 30_000 });
  });
});
