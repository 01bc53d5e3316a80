/**
 * Helpers for the ticker end-to-end tests: the ticker and the pgqadm
 * command line run as separate OS processes (the launcher
 * services/cli/pgqadm.js), against a per-file database and a per-file NATS
 * subject prefix.
 *
 *   useProcessCleanup();                       // kills what a test started, dumps output on failure
 *   const conf = writeTickerConfig(dir, { db: db.url, natsUrl: natsUrl(), subjectPrefix });
 *   const ticker = startTicker(conf, "a");
 *   await ticker.waitForLog("active: this instance ticks");
 *   const r = await runPgqadm([conf, "--json", "status"]);
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeEach, expect } from "vitest";
import type { TickNotice } from "../../shared/bus/subjects.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const LAUNCHER = join(REPO_ROOT, "services/cli/pgqadm.js");
export const NATS_SERVER_BIN = "/usr/sbin/nats-server";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ temp dirs and config files

const tempDirs: string[] = [];

/** A fresh temp directory, removed when the test file's afterAll of useProcessCleanup runs. */
export function makeTempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `skytools-ticker-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export interface TickerConfigOptions {
  db: string;
  natsUrl: string;
  subjectPrefix: string;
  jobName?: string;
  /** More [pgqadm] keys (or overrides of the suggested defaults). */
  extra?: Record<string, string | number>;
  /** File name inside dir (default conf.ini). */
  file?: string;
}

/** Writes a [pgqadm] config file with fast test timings; returns its path. */
export function writeTickerConfig(dir: string, options: TickerConfigOptions): string {
  const keys: Record<string, string | number> = {
    job_name: options.jobName ?? "ticktest",
    db: options.db,
    nats_url: options.natsUrl,
    subject_prefix: options.subjectPrefix,
    loop_delay: 0.1,
    maint_delay: 2,
    standby_delay: 0.2,
    command_timeout: 5,
    ...options.extra,
  };
  const path = join(dir, options.file ?? "conf.ini");
  const body = Object.entries(keys)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
  writeFileSync(path, `# written by test/ticker/helpers.ts\n[pgqadm]\n${body}\n`);
  return path;
}

// ------------------------------------------------------------------ processes

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every process started and not yet reaped, for the cleanup hooks and the exit guard. */
const live = new Set<ServiceProcess>();
/** Processes started by the running test (killed in afterEach); undefined outside a test. */
let testScope: ServiceProcess[] | undefined;
/** Processes started outside a test (beforeAll), killed in afterAll; also kept for failure dumps. */
const fileScope: ServiceProcess[] = [];

process.once("exit", () => {
  for (const p of live) p.child.kill("SIGKILL");
});

/** A long-running child process whose stdout/stderr are captured; stdout JSON lines are parsed as log lines. */
export class ServiceProcess {
  readonly child: ChildProcess;
  readonly label: string;
  /** stdout and stderr interleaved, as received. */
  output = "";
  /** Parsed JSON log lines from stdout. */
  readonly lines: LogLine[] = [];
  exitInfo: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  private stdoutRest = "";
  private readonly listeners = new Set<() => void>();

  constructor(label: string, command: string, args: string[], env?: NodeJS.ProcessEnv) {
    this.label = label;
    this.child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    live.add(this);
    (testScope ?? fileScope).push(this);
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      this.output += chunk;
      this.stdoutRest += chunk;
      const parts = this.stdoutRest.split("\n");
      this.stdoutRest = parts.pop()!;
      for (const part of parts) {
        if (!part.startsWith("{")) continue;
        try {
          this.lines.push(JSON.parse(part) as LogLine);
        } catch {
          // not a log line
        }
      }
      this.notify();
    });
    this.child.stderr!.on("data", (chunk: string) => {
      this.output += chunk;
      this.notify();
    });
    this.exited = new Promise<ExitInfo>((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        this.notify();
        resolve(this.exitInfo);
      });
      this.child.once("error", (error) => {
        this.output += `\n[spawn error] ${error.message}\n`;
        this.exitInfo = { code: null, signal: null };
        live.delete(this);
        this.notify();
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  private notify() {
    for (const l of [...this.listeners]) l();
  }

  /** Last `n` lines of output, for failure messages. */
  tail(n = 40): string {
    const all = this.output.split("\n");
    return all.slice(-n).join("\n");
  }

  /** Log lines whose msg contains `text` (or matches it). */
  logs(text: string | RegExp): LogLine[] {
    return this.lines.filter((l) => typeof l.msg === "string" && (typeof text === "string" ? l.msg.includes(text) : text.test(l.msg)));
  }

  /**
   * Waits for a log line whose msg contains/matches `text` (and passes `where`), among lines
   * number `from` onwards (default: any line so far).
   */
  waitForLog(
    text: string | RegExp,
    options: { timeoutMs?: number; from?: number; where?: (l: LogLine) => boolean } = {},
  ): Promise<LogLine> {
    const { timeoutMs = 10_000, from = 0, where } = options;
    const find = () =>
      this.lines
        .slice(from)
        .find((l) => typeof l.msg === "string" && (typeof text === "string" ? l.msg.includes(text) : text.test(l.msg)) && (!where || where(l)));
    return new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const line = find();
        if (line) {
          done();
          resolve(line);
        } else if (!this.running) {
          done();
          reject(new Error(`${this.label} exited (${JSON.stringify(this.exitInfo)}) before logging "${String(text)}"; output:\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label} did not log "${String(text)}" within ${timeoutMs} ms; output:\n${this.tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for the process to exit, failing after timeoutMs. */
  async waitForExit(timeoutMs = 10_000): Promise<ExitInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.label} did not exit within ${timeoutMs} ms; output:\n${this.tail()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` (default SIGKILL) and waits until the process is gone. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<ExitInfo> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

/** Starts `node services/cli/pgqadm.js CONFIG ticker` (pretty logging off: stdout is a pipe, so JSON lines). */
export function startTicker(configPath: string, label = "ticker"): ServiceProcess {
  return new ServiceProcess(label, process.execPath, [LAUNCHER, configPath, "ticker"]);
}

function dump(processes: ServiceProcess[]) {
  for (const p of processes) {
    console.error(
      `----- ${p.label} (pid ${p.pid}, ${p.running ? "running" : `exit ${JSON.stringify(p.exitInfo)}`}) output, last 60 lines -----\n${p.tail(60)}`,
    );
  }
}

async function killAll(processes: ServiceProcess[]) {
  await Promise.all(processes.map((p) => p.kill("SIGKILL")));
}

/**
 * Registers the hooks of a test file: processes started inside a test are killed after it
 * (also when it fails), those started in beforeAll after the file; on a failed test the output
 * of every process it could have involved is printed. Event producers still running are
 * stopped; temp dirs are removed after the file.
 */
export function useProcessCleanup(): void {
  beforeEach(() => {
    testScope = [];
  });
  afterEach(async (ctx) => {
    const mine = testScope ?? [];
    testScope = undefined;
    if (ctx.task.result?.state === "fail") dump([...fileScope, ...mine]);
    await killAll(mine);
    // Tests that run concurrently stop their own producers; this catches those of a failed test.
    if (!ctx.task.concurrent) await Promise.all([...runningProducers].map((p) => p.stop()));
  });
  afterAll(async () => {
    await Promise.all([...runningProducers].map((p) => p.stop()));
    await killAll([...fileScope, ...live]);
    fileScope.length = 0;
    for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
}

// ------------------------------------------------------------------ the pgqadm command line

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node services/cli/pgqadm.js ARGS...` to completion and returns its exit code and output. */
export function runPgqadm(args: string[], options: { timeoutMs?: number; command?: string[] } = {}): Promise<CliResult> {
  const [cmd, ...pre] = options.command ?? [process.execPath, LAUNCHER];
  return new Promise((resolve, reject) => {
    execFile(cmd!, [...pre, ...args], { cwd: REPO_ROOT, timeout: options.timeoutMs ?? 30_000, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") {
        reject(new Error(`pgqadm ${args.join(" ")} did not finish (${error.message}); stdout:\n${stdout}\nstderr:\n${stderr}`));
        return;
      }
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** Describes a CLI result for assertion messages. */
export function show(r: CliResult): string {
  return `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** Expects exit 0 and nothing on stderr; returns stdout. */
export function expectOk(r: CliResult): string {
  expect(r.code, show(r)).toBe(0);
  expect(r.stderr, show(r)).toBe("");
  return r.stdout;
}

/** Expects exit 1 with `pgqadm: COMMAND failed (CODE): MESSAGE` on stderr; returns MESSAGE. */
export function expectFailed(r: CliResult, command: string, code: string): string {
  expect(r.code, show(r)).toBe(1);
  const m = new RegExp(`^pgqadm: ${command} failed \\(${code}\\): (.+)$`, "m").exec(r.stderr);
  expect(m, show(r)).not.toBeNull();
  return m![1]!;
}

/** Expects the --json form of an error reply: exit 1, `{"error":{"code":CODE,...}}` on stdout; returns the message. */
export function expectJsonError(r: CliResult, code: string): string {
  expect(r.code, show(r)).toBe(1);
  const reply = JSON.parse(r.stdout) as { error: { code: string; message: string } };
  expect(reply.error.code, show(r)).toBe(code);
  return reply.error.message;
}

/** Runs pgqadm with --json, expects exit 0, returns the parsed result. */
export async function pgqadmJson<T = Record<string, unknown>>(config: string, ...words: string[]): Promise<T> {
  const r = await runPgqadm([config, "--json", ...words]);
  if (r.code !== 0) throw new Error(`pgqadm ${words.join(" ")} failed: ${show(r)}`);
  return JSON.parse(r.stdout) as T;
}

// ------------------------------------------------------------------ polling

/** Polls `probe` until it returns something truthy (which is returned); fails after timeoutMs. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 100, what = "condition" } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `; last error: ${(lastError as Error).message}` : ""}`);
    }
    await sleep(intervalMs);
  }
}

// ------------------------------------------------------------------ PgQ state

/** A pool, a client or a TestDatabase. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
}

export interface TickRow {
  id: number;
  time: Date;
  snapshot: string;
  /** The queue's event sequence at the tick: equal to the previous tick's when no event came in between. */
  eventSeq: number;
}

/** All ticks of a queue, oldest first. */
export async function queueTicks(db: Queryable, queue: string): Promise<TickRow[]> {
  const { rows } = await db.query<{ tick_id: string; tick_time: Date; snap: string; seq: string }>(
    `select t.tick_id, t.tick_time, t.tick_snapshot::text as snap, t.tick_event_seq as seq
       from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
      where q.queue_name = $1
      order by t.tick_id`,
    [queue],
  );
  return rows.map((r) => ({ id: Number(r.tick_id), time: r.tick_time, snapshot: r.snap, eventSeq: Number(r.seq) }));
}

/** Newest tick id of a queue (0 when none). */
export async function lastTickId(db: Queryable, queue: string): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>(
    `select max(t.tick_id) as id from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = $1`,
    [queue],
  );
  return Number(rows[0]?.id ?? 0);
}

/** Waits until the queue has a tick newer than `after`; returns its id. */
export function waitForTickAfter(db: Queryable, queue: string, after: number, timeoutMs = 5_000): Promise<number> {
  return waitFor(
    async () => {
      const id = await lastTickId(db, queue);
      return id > after ? id : undefined;
    },
    { timeoutMs, intervalMs: 50, what: `a tick of ${queue} after tick ${after}` },
  );
}

/**
 * Consecutive ticks (by tick id) of a queue whose snapshots go backwards: xmin or xmax
 * shrinks, or a transaction visible in the older snapshot is in progress in the newer one.
 * Empty when the tick history is consistent.
 */
export async function snapshotOrderViolations(db: Queryable, queue: string): Promise<Array<Record<string, unknown>>> {
  const { rows } = await db.query(
    `with t as (
       select tick_id, tick_snapshot as snap,
              lag(tick_id) over w as prev_id, lag(tick_snapshot) over w as prev
         from pgq.tick
        where tick_queue = (select queue_id from pgq.queue where queue_name = $1)
       window w as (order by tick_id))
     select prev_id, tick_id, prev::text as prev_snapshot, snap::text as snapshot
       from t
      where prev is not null
        and (pg_snapshot_xmin(snap) < pg_snapshot_xmin(prev)
             or pg_snapshot_xmax(snap) < pg_snapshot_xmax(prev)
             or exists (select 1 from pg_snapshot_xip(snap) x where pg_visible_in_snapshot(x, prev)))`,
    [queue],
  );
  return rows;
}

export interface Producer {
  /** Events committed so far. */
  committed(): number;
  /** Stops producing; resolves to the number of events committed. */
  stop(): Promise<number>;
}

/** Producers not stopped yet; useProcessCleanup stops them after each test. */
const runningProducers = new Set<Producer>();

/**
 * Keeps inserting events into `queue` from `connections` parallel sessions (a pool of its own
 * on `databaseUrl`, so the test's pool stays free), each event in its own short transaction
 * that stays open for 0..2×`holdMs` (random), so tick snapshots have transactions in
 * progress. stop() ends it and returns how many events were committed.
 */
export function produceEvents(
  databaseUrl: string,
  queue: string,
  options: { connections?: number; holdMs?: number } = {},
): Producer {
  const { connections = 2, holdMs = 20 } = options;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: connections });
  pool.on("error", () => {}); // idle clients terminated by a test
  let stopping = false;
  let committed = 0;
  const workers = Array.from({ length: connections }, async () => {
    while (!stopping) {
      let client;
      try {
        client = await pool.connect();
      } catch {
        await sleep(100);
        continue;
      }
      try {
        while (!stopping) {
          await client.query("begin");
          await client.query("select pgq.insert_event($1, 'load', 'payload')", [queue]);
          // Random hold times, so transactions end out of order and tick snapshots have xip entries.
          if (holdMs > 0) await client.query("select pg_sleep($1)", [(Math.random() * 2 * holdMs) / 1000]);
          await client.query("commit");
          committed++;
        }
        client.release();
      } catch (error) {
        client.release(error as Error);
        await sleep(100);
      }
    }
  });
  let stopped: Promise<number> | undefined;
  const producer: Producer = {
    committed: () => committed,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        await Promise.all(workers);
        await pool.end().catch(() => {});
        runningProducers.delete(producer);
        return committed;
      })()),
  };
  runningProducers.add(producer);
  return producer;
}

// ------------------------------------------------------------------ NATS

/** A test-side NATS connection that keeps reconnecting quickly (for outage tests). */
export function connectNatsClient(url: string): Promise<NatsConnection> {
  return connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 200, reconnectJitter: 0, timeout: 5_000 });
}

export interface NoticeCollector {
  readonly notices: TickNotice[];
  readonly sub: Subscription;
  /** Waits until a notice matching `match` has arrived. */
  waitFor(match: (n: TickNotice) => boolean, timeoutMs?: number, what?: string): Promise<TickNotice>;
}

/** Subscribes to a subject of tick notices and collects them. */
export function collectNotices(nc: NatsConnection, subject: string): NoticeCollector {
  const notices: TickNotice[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      try {
        notices.push(JSON.parse(msg.string()) as TickNotice);
      } catch {
        notices.push({ queue: "<not JSON>", tick_id: -1, time: "", database: msg.string() });
      }
    },
  });
  return {
    notices,
    sub,
    waitFor: (match, timeoutMs = 5_000, what = "a tick notice") =>
      waitFor(() => notices.find(match), { timeoutMs, intervalMs: 50, what }),
  };
}

/** Sends a raw request and returns the parsed JSON reply. */
export async function rawRequest(nc: NatsConnection, subject: string, payload: string | Uint8Array, timeoutMs = 5_000): Promise<unknown> {
  const msg = await nc.request(subject, payload, { timeout: timeoutMs });
  return JSON.parse(msg.string());
}

/** Sends a request and collects every reply that arrives within windowMs (commands every instance answers). */
export async function requestAll(nc: NatsConnection, subject: string, payload: string, windowMs = 1_000): Promise<unknown[]> {
  const replies: unknown[] = [];
  const iter = await nc.requestMany(subject, payload, { strategy: "timer", maxWait: windowMs });
  for await (const msg of iter) replies.push(JSON.parse(msg.string()));
  return replies;
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts a private nats-server (JetStream on, store in `dir`) on `port` and waits until it accepts clients. */
export async function startNatsServer(port: number, dir: string, label = "nats-server"): Promise<ServiceProcess> {
  const server = new ServiceProcess(label, NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "js")]);
  await waitFor(
    async () => {
      if (!server.running) throw new Error(`${label} exited: ${server.tail()}`);
      const nc = await connect({ servers: `nats://127.0.0.1:${port}`, timeout: 500, reconnect: false });
      await nc.close();
      return true;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: `${label} on port ${port}` },
  );
  return server;
}
