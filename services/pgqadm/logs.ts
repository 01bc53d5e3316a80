/**
 * `pgqadm CONF logs [--service S] [--since T] [--level L] [--limit N]`:
 * the log records the services shipped to the config's `log_db`
 * (sql/logdb/install.sql, shared/logdb/shipper.ts), oldest first, the
 * newest N (200 unless --limit). It reads the log database directly, not
 * over NATS: first logdb.load(), so records still in the queue show too,
 * then logdb.record. --json prints each record as one JSON line.
 *
 * The option checks, the query and the output format are pure functions
 * here; runLogs() is the I/O.
 */
import pg from "pg";
import { type OptionSpec, UsageError } from "../../shared/cli/args.ts";
import { toPgConfig } from "../../shared/config/dsn.ts";

export const LOGS_OPTIONS: OptionSpec = {
  service: { type: "string", missing: "--service needs a service: ticker, replay, copy or repair" },
  since: { type: "string", missing: "--since needs a date/time or an age (30m, 2h, 1d)" },
  level: { type: "string", missing: "--level needs one of trace, debug, info, warn, error, fatal" },
  limit: { type: "string", missing: "--limit needs a number of records" },
};

/** pino's level numbers. */
export const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

const DEFAULT_LIMIT = 200;
const MAX_LIMIT = 100_000;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export interface LogsFilter {
  service?: string;
  since?: Date;
  minLevel?: number;
  limit: number;
}

/** Checks the logs options; UsageError with the fix for a bad one. */
export function logsFilter(options: Record<string, string | true>, now: Date = new Date()): LogsFilter {
  const filter: LogsFilter = { limit: DEFAULT_LIMIT };
  if (typeof options.service === "string") filter.service = options.service;
  if (typeof options.level === "string") {
    const level = LEVELS[options.level.toLowerCase()];
    if (level === undefined) throw new UsageError(`--level ${options.level}: use one of ${Object.keys(LEVELS).join(", ")}`);
    filter.minLevel = level;
  }
  if (typeof options.since === "string") {
    const text = options.since.trim();
    const age = /^(\d+)\s*([smhd])$/.exec(text);
    const time = age
      ? new Date(now.getTime() - Number(age[1]) * UNIT_SECONDS[age[2]!]! * 1000)
      : /^\d{4}-\d{2}-\d{2}/.test(text)
        ? new Date(text)
        : new Date(Number.NaN);
    if (Number.isNaN(time.getTime())) throw new UsageError(`--since needs a date/time (2026-11-27T10:00:00Z) or an age (30s, 10m, 2h, 1d), got "${text}"`);
    filter.since = time;
  }
  if (typeof options.limit === "string") {
    const limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new UsageError(`--limit needs a whole number from 1 to ${MAX_LIMIT}`);
    filter.limit = limit;
  }
  return filter;
}

/** The newest `limit` records that pass the filter, oldest first; values as parameters only. */
export function logsQuery(filter: LogsFilter): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  if (filter.service !== undefined) {
    values.push(filter.service);
    where.push(`service = $${values.length}`);
  }
  if (filter.since !== undefined) {
    values.push(filter.since.toISOString());
    where.push(`time >= $${values.length}::timestamptz`);
  }
  if (filter.minLevel !== undefined) {
    values.push(filter.minLevel);
    where.push(`level >= $${values.length}`);
  }
  values.push(filter.limit);
  const text =
    `select * from (select id, time, level, service, job, host, pid, msg, record from logdb.record` +
    (where.length > 0 ? ` where ${where.join(" and ")}` : "") +
    ` order by time desc, id desc limit $${values.length}) newest order by time, id`;
  return { text, values };
}

export interface LogRow {
  id: string;
  time: Date;
  level: number;
  service: string | null;
  job: string | null;
  host: string | null;
  pid: number | null;
  msg: string | null;
  record: Record<string, unknown>;
}

const SHOWN_ELSEWHERE = new Set(["level", "time", "service", "job", "host", "pid", "msg"]);

function levelName(level: number): string {
  const names = Object.entries(LEVELS).filter(([, n]) => n <= level);
  return (names.at(-1)?.[0] ?? String(level)).toUpperCase();
}

/** One line per record: time, level, service, job, host-pid, message, then its other fields as JSON. */
export function formatLogRow(row: LogRow): string {
  const rest = Object.fromEntries(Object.entries(row.record).filter(([k]) => !SHOWN_ELSEWHERE.has(k)));
  const extra = Object.keys(rest).length > 0 ? `  ${JSON.stringify(rest)}` : "";
  const who = `${row.host ?? "?"}-${row.pid ?? "?"}`;
  return `${row.time.toISOString()}  ${levelName(row.level).padEnd(5)}  ${row.service ?? "-"}  ${row.job ?? "-"}  ${who}  ${row.msg ?? ""}${extra}`;
}

/** Runs the query on `logDb`; exit code 0, or 1 when the log database cannot be read. */
export async function runLogs(logDb: string, filter: LogsFilter, json: boolean): Promise<number> {
  const client = new pg.Client({ ...toPgConfig(logDb), connectionTimeoutMillis: 10_000, application_name: "pgqadm logs" });
  client.on("error", () => {});
  try {
    await client.connect();
    // Records still in the queue are moved first; a role that may only read skips this.
    await client.query("select logdb.load()").catch(() => {});
    const { rows } = await client.query<LogRow>(logsQuery(filter));
    for (const row of rows) process.stdout.write(`${json ? JSON.stringify(row.record) : formatLogRow(row)}\n`);
    if (rows.length === 0) process.stderr.write("(no log records match)\n");
    else if (rows.length === filter.limit) process.stderr.write(`(the newest ${filter.limit} records; --limit N for more)\n`);
    return 0;
  } catch (error) {
    const missing = (error as { code?: string }).code === "42P01" ? "; install the log database with sql/logdb/install.sql" : "";
    process.stderr.write(`pgqadm: logs: cannot read log_db: ${(error as Error).message}${missing}\n`);
    return 1;
  } finally {
    await client.end().catch(() => {});
  }
}
