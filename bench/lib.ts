/**
 * Helpers for the benchmark: settings, machine description, throwaway
 * database, client loops and the result table.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import pg from "pg";

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
  serverUrl: string;
}

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
  return {
    quick,
    events: positiveInt("BENCH_EVENTS", env.BENCH_EVENTS, quick ? 20_000 : 1_000_000),
    durationMs: seconds * 1000,
    warmupMs: Math.min(1000, seconds * 200),
    fetchSize: positiveInt("BENCH_FETCH", env.BENCH_FETCH, 1000),
    serverUrl: env.DATABASE_URL || DEFAULT_DATABASE_URL,
  };
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

export function formatNumber(value: number | null, unit: string): string {
  if (value === null) return "—";
  if (unit === "events/s") {
    if (value >= 10_000) return `${(value / 1000).toFixed(1)}k ev/s`;
    return `${Math.round(value)} ev/s`;
  }
  if (unit === "MB") return `${value.toFixed(0)} MB`;
  return `${value} ${unit}`;
}

export function renderTable(rows: ResultRow[]): string {
  const header = ["workload", "result", "baseline", "ratio", "target"];
  const body = rows.map((r) => [
    r.workload,
    formatNumber(r.value, r.unit),
    r.baseline === null ? "—" : `${formatNumber(r.baseline, r.unit)}${r.baselineLabel ? ` (${r.baselineLabel})` : ""}`,
    r.ratio === null ? "—" : `${(r.ratio * 100).toFixed(0)} %`,
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
