/**
 * Helpers for the benchmark: settings, machine description, throwaway
 * database, client loops and the result table.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { Disturbance, Monitor } from "./monitor.ts";

export const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export interface BenchSettings {
  quick: boolean;
  /** Events in the batch read by the consumer-read workloads. */
  events: number;
  /** Timed length of each insert measurement (ms). */
  durationMs: number;
  /** Untimed warm-up before each insert measurement (ms). */
  warmupMs: number;
  /** Rows per cursor fetch for the iterator read. */
  fetchSize: number;
  /** Single-row UPDATE transactions in the replay UPDATE backlog (docs/benchmarks.md, P2). */
  updateBacklog: number;
  /** Row changes in the mixed insert/update/delete replay backlog (docs/benchmarks.md, P2 and P6). */
  mixedBacklog: number;
  /** Workload groups to run: pgq, capture, replay, lag, copy, compare (BENCH_ONLY, comma-separated; default all). */
  only: Set<WorkloadGroup>;
  serverUrl: string;
}

export const WORKLOAD_GROUPS = ["pgq", "capture", "replay", "lag", "copy", "compare"] as const;
export type WorkloadGroup = (typeof WORKLOAD_GROUPS)[number];

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${value}`);
  return n;
}

export function readSettings(argv: string[], env: NodeJS.ProcessEnv): BenchSettings {
  const unknown = argv.filter((a) => a !== "--quick");
  if (unknown.length > 0) throw new Error(`unknown argument(s): ${unknown.join(" ")} (only --quick)`);
  const quick = argv.includes("--quick") || env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  const seconds = positiveInt("BENCH_SECONDS", env.BENCH_SECONDS, quick ? 1 : 5);
  const only = new Set<WorkloadGroup>();
  for (const g of (env.BENCH_ONLY || WORKLOAD_GROUPS.join(",")).split(",").map((x) => x.trim())) {
    if (!(WORKLOAD_GROUPS as readonly string[]).includes(g)) {
      throw new Error(`BENCH_ONLY: unknown group ${g} (groups: ${WORKLOAD_GROUPS.join(", ")})`);
    }
    only.add(g as WorkloadGroup);
  }
  return {
    quick,
    events: positiveInt("BENCH_EVENTS", env.BENCH_EVENTS, quick ? 20_000 : 1_000_000),
    durationMs: seconds * 1000,
    warmupMs: Math.min(1000, seconds * 200),
    fetchSize: positiveInt("BENCH_FETCH", env.BENCH_FETCH, 1000),
    updateBacklog: positiveInt("BENCH_UPDATE_BACKLOG", env.BENCH_UPDATE_BACKLOG, quick ? 20_000 : 239_000),
    mixedBacklog: positiveInt("BENCH_MIXED_BACKLOG", env.BENCH_MIXED_BACKLOG, quick ? 50_000 : 1_000_000),
    only,
    serverUrl: env.DATABASE_URL || DEFAULT_DATABASE_URL,
  };
}

/** What a workload module gets from bench/run.ts. */
export interface BenchContext {
  settings: BenchSettings;
  /** The main throwaway database (PgQ installed). */
  url: string;
  monitor: Monitor;
  rows: ResultRow[];
  disturbances: Record<string, Disturbance>;
  /** Creates one more throwaway database on the server (dropped at the end with the main one); returns its URL. */
  createDatabase(suffix: string): Promise<string>;
}

export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/** Runs `work` inside the monitor's window and records what disturbed it under `id`. */
export async function measured<T>(ctx: BenchContext, id: string, work: () => Promise<T>): Promise<T> {
  ctx.monitor.begin();
  try {
    return await work();
  } finally {
    ctx.disturbances[id] = await ctx.monitor.end();
  }
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  postgres: string;
  node: string;
  os: string;
}

function cpuModel(): string {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    if (line) return line.split(":").slice(1).join(":").trim();
  } catch {
    // not Linux: fall back to os.cpus()
  }
  return os.cpus()[0]?.model ?? "unknown";
}

export async function machineInfo(db: pg.ClientBase): Promise<MachineInfo> {
  const { rows } = await db.query<{ v: string }>("select version() as v");
  return {
    cpu: cpuModel(),
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    postgres: rows[0]!.v,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
  };
}

/** 1, 5 and 15 minute load averages. */
export function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

/** A connection URL for another database on the same server. */
export function urlForDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

export function benchDatabaseName(): string {
  return `pgq_bench_${randomBytes(5).toString("hex")}`;
}

export async function connect(url: string, syncCommitOff = true): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: "pgq-bench" });
  // A connection that breaks while idle (e.g. the database dropped on
  // Ctrl-C) must not crash the process; a running query still rejects.
  client.on("error", (error) => process.stderr.write(`[bench] connection error: ${error.message}\n`));
  await client.connect();
  if (syncCommitOff) await client.query("set synchronous_commit = off");
  return client;
}

export async function connectMany(url: string, n: number): Promise<pg.Client[]> {
  return Promise.all(Array.from({ length: n }, () => connect(url)));
}

export async function closeAll(clients: pg.Client[]): Promise<void> {
  await Promise.allSettled(clients.map((c) => c.end()));
}

export interface LoopResult {
  ops: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
}

let sequence = 0;
const nextSeq = () => ++sequence;

async function timedLoop(
  clients: pg.Client[],
  op: (client: pg.Client, seq: () => number) => Promise<void>,
  durationMs: number,
): Promise<{ ops: number; seconds: number }> {
  const start = performance.now();
  const until = start + durationMs;
  const perClient = await Promise.all(
    clients.map(async (client) => {
      let ops = 0;
      while (performance.now() < until) {
        await op(client, nextSeq);
        ops++;
      }
      return ops;
    }),
  );
  // Each client finishes its last op after `until`: time to the last one.
  return { ops: perClient.reduce((a, b) => a + b, 0), seconds: (performance.now() - start) / 1000 };
}

/**
 * Measures two workloads A (the subject) and B (its baseline) on the same
 * clients, interleaved B A A B in four quarter-length rounds after a
 * warm-up of each, so that drift during the run (checkpoints, growing
 * tables, a neighbour's load) weighs on both alike.
 */
export async function runPair(
  clients: pg.Client[],
  a: (client: pg.Client, seq: () => number) => Promise<void>,
  b: (client: pg.Client, seq: () => number) => Promise<void>,
  eventsPerOp: number,
  durationMs: number,
  warmupMs: number,
): Promise<{ a: LoopResult; b: LoopResult }> {
  if (warmupMs > 0) {
    await timedLoop(clients, b, warmupMs / 2);
    await timedLoop(clients, a, warmupMs / 2);
  }
  const total = { a: { ops: 0, seconds: 0 }, b: { ops: 0, seconds: 0 } };
  for (const side of ["b", "a", "a", "b"] as const) {
    const r = await timedLoop(clients, side === "a" ? a : b, durationMs / 2);
    total[side].ops += r.ops;
    total[side].seconds += r.seconds;
  }
  const result = (t: { ops: number; seconds: number }): LoopResult => ({
    ops: t.ops,
    events: t.ops * eventsPerOp,
    seconds: t.seconds,
    eventsPerSecond: (t.ops * eventsPerOp) / t.seconds,
  });
  return { a: result(total.a), b: result(total.b) };
}

/** Active backends of other databases right now: a sign that something else loads the server. */
export async function otherActiveBackends(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
      where state = 'active' and backend_type = 'client backend'
        and datname is distinct from current_database()`,
  );
  return rows[0]!.n;
}

export interface ResultRow {
  id: string;
  workload: string;
  value: number | null;
  unit: string;
  baseline: number | null;
  baselineLabel: string | null;
  ratio: number | null;
  target: string;
  pass: boolean | null;
  /** Conditions at measurement time. */
  loadAverage1m?: number;
  otherActiveBackends?: number;
  detail?: Record<string, unknown>;
}

const RATE_UNITS: Record<string, string> = { "events/s": "ev/s", "tx/s": "tx/s", "rows/s": "rows/s" };

export function formatNumber(value: number | null, unit: string): string {
  if (value === null) return "—";
  const rate = RATE_UNITS[unit];
  if (rate) {
    if (value >= 10_000) return `${(value / 1000).toFixed(1)}k ${rate}`;
    return `${Math.round(value)} ${rate}`;
  }
  if (unit === "MB") return `${value.toFixed(0)} MB`;
  return `${value} ${unit}`;
}

export function renderTable(rows: ResultRow[]): string {
  const header = ["workload", "result", "baseline", "ratio", "load 1m", "target"];
  const body = rows.map((r) => [
    r.workload,
    formatNumber(r.value, r.unit),
    r.baseline === null ? "—" : `${formatNumber(r.baseline, r.unit)}${r.baselineLabel ? ` (${r.baselineLabel})` : ""}`,
    r.ratio === null ? "—" : `${(r.ratio * 100).toFixed(0)} %`,
    r.loadAverage1m === undefined ? "—" : r.loadAverage1m.toFixed(1),
    r.target,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(" | ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...body.map(line)].join("\n");
}

/**
 * Runs a bench script (path relative to bench/) in a child Node process with tsx, and returns
 * the JSON object it prints as its last stdout line. A child of its own gives the work its own
 * peak RSS.
 */
export function runChildJson<T>(script: string, args: string[]): Promise<T> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const argv = ["--import", import.meta.resolve("tsx"), path, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const last = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !last.startsWith("{")) {
        reject(new Error(`${script} ${args.join(" ")} exited with ${code}: ${err.trim() || out.trim()}`));
        return;
      }
      resolve(JSON.parse(last) as T);
    });
  });
}

/** Peak RSS of this process so far (KB). */
export function maxRssKB(): number {
  return process.resourceUsage().maxRSS;
}

/** A deterministic PRNG (mulberry32): the same seed gives the same workload. */
export function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
