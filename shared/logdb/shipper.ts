/**
 * The `log_db` log destination: every log record of the service (the
 * JSON line pino writes) becomes an event of the PgQ queue `logdb` in the
 * log database (sql/logdb/install.sql), and logdb.load() there moves the
 * queue's batches into the table logdb.record.
 *
 * The log database is never on the service's path: write() only appends
 * the line to a bounded buffer in memory, and a timer ships the buffer in
 * the background, one INSERT statement per batch of lines, over one
 * connection with short timeouts. When the log database cannot take them
 * (down, unreachable, hanging, schema missing) the lines of that attempt
 * are dropped, and so are new lines once the buffer is full; each dropped
 * line is counted (skytools_log_db_dropped_total) and the service goes on.
 * Shipping resumes by itself when the database answers again.
 */
import { hostname } from "node:os";
import pg from "pg";
import { Counter } from "prom-client";
import { toPgConfig } from "../config/dsn.ts";

/** The queue the records go into (created by sql/logdb/install.sql). */
export const LOGDB_QUEUE = "logdb";
/** Lines kept while the log database is slow or away; more are dropped. */
export const MAX_BUFFERED = 5000;
/** Lines per INSERT statement. */
const BATCH_LINES = 500;
/** How often the buffer is shipped. */
const FLUSH_MS = 500;
/** How often logdb.load() is called after records were shipped. */
const LOAD_MS = 2000;
/** After a failure, the next attempt waits this long (the lines meanwhile are buffered, then dropped). */
const RETRY_MS = 2000;
/** Bounds of one connection attempt and one statement. */
const CONNECT_TIMEOUT_MS = 3000;
const STATEMENT_TIMEOUT_MS = 5000;
/** At stop: the last lines get this long to go out. */
const CLOSE_WAIT_MS = 2000;

export interface ShipperProblem {
  /** "down" when an attempt failed after working (or at first), "back" when it works again. */
  kind: "down" | "back";
  message?: string;
  dropped: number;
}

export class LogDbShipper {
  readonly dropped = new Counter({
    name: "skytools_log_db_dropped_total",
    help: "log records not shipped to log_db: the log database could not take them, or the buffer was full",
    registers: [],
  });
  readonly shipped = new Counter({
    name: "skytools_log_db_shipped_total",
    help: "log records shipped to the PgQ queue of log_db",
    registers: [],
  });
  /** Counts as plain numbers too (the counters are registered by the service's shell). */
  droppedCount = 0;
  shippedCount = 0;

  private buffer: string[] = [];
  private readonly pool: pg.Pool;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;
  private retryAt = 0;
  private lastLoad = 0;
  private pendingLoad = false;
  private down = false;
  private closed = false;
  private readonly host = hostname();

  constructor(
    dsn: string,
    private readonly service: string,
    private readonly job: string,
    /** Told when shipping stops or resumes working (logged by the caller; those lines are shipped like any). */
    private readonly onProblem: (problem: ShipperProblem) => void = () => {},
  ) {
    this.pool = new pg.Pool({
      ...toPgConfig(dsn),
      max: 1,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      application_name: `skytools ${service} log shipper`,
    });
    // An idle connection the server closed: the next attempt reconnects.
    this.pool.on("error", () => {});
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    // Shipping logs never keeps a stopping process alive.
    this.timer.unref();
  }

  /** pino's stream interface: one serialized record (a JSON line). Never throws, never waits. */
  write(line: string): void {
    if (this.closed) return;
    if (this.buffer.length >= MAX_BUFFERED) {
      this.drop(1);
      return;
    }
    this.buffer.push(line.endsWith("\n") ? line.slice(0, -1) : line);
  }

  /** Ships what is buffered now (one flush at a time). */
  flush(): Promise<void> {
    this.flushing ??= this.ship().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  /** Stops: the buffered lines get CLOSE_WAIT_MS to go out, the rest count as dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    this.retryAt = 0;
    await Promise.race([
      (async () => {
        while (this.buffer.length > 0 && !this.down) {
          await this.flush();
        }
      })(),
      new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref()),
    ]);
    this.closed = true;
    this.drop(this.buffer.length);
    this.buffer = [];
    void this.pool.end().catch(() => {});
  }

  private drop(n: number): void {
    if (n <= 0) return;
    this.droppedCount += n;
    this.dropped.inc(n);
  }

  private async ship(): Promise<void> {
    const now = Date.now();
    if (now < this.retryAt) return;
    if (this.buffer.length === 0) {
      if (this.pendingLoad && now - this.lastLoad >= LOAD_MS) await this.load();
      return;
    }
    const lines = this.buffer.splice(0, BATCH_LINES);
    try {
      await this.pool.query(
        "select pgq.insert_event($1, x.level, l.line, $3, $4, $5, null) from unnest($2::text[]) with ordinality as l(line, n), " +
          "lateral (select coalesce(substring(l.line from '\"level\":(\\d+)'), '30') as level) x order by l.n",
        [LOGDB_QUEUE, lines, this.service, this.job, this.host],
      );
      this.shippedCount += lines.length;
      this.shipped.inc(lines.length);
      this.pendingLoad = true;
      if (this.down) {
        this.down = false;
        this.onProblem({ kind: "back", dropped: this.droppedCount });
      }
      if (Date.now() - this.lastLoad >= LOAD_MS) await this.load();
    } catch (error) {
      this.drop(lines.length);
      this.retryAt = Date.now() + RETRY_MS;
      if (!this.down) {
        this.down = true;
        this.onProblem({ kind: "down", message: (error as Error).message, dropped: this.droppedCount });
      }
    }
  }

  /** Moves the shipped records from the queue into the table; they wait in the queue if it fails. */
  private async load(): Promise<void> {
    this.lastLoad = Date.now();
    try {
      await this.pool.query("select logdb.load()");
      this.pendingLoad = false;
    } catch {
      // the next load (or `pgqadm CONF logs`) takes them
    }
  }
}
