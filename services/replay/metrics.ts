/**
 * The replay service's Prometheus metrics (docs/metrics.md), on the
 * service's registry. What happens in replay is counted through the
 * hooks of the returned object, called from main.ts and from the
 * settings of replay-batch.ts once a batch is committed; what is a fact
 * of the databases (the lag, the tables per state) is read when
 * Prometheus scrapes, through `sources` (replayScrapeSources for the
 * service). A scrape-time read is shared by the metrics of one scrape,
 * at most one runs at a time, and a failed or slow one only leaves its
 * metric without samples: collect never throws.
 */
import type pg from "pg";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { type FailureKind, isNotInstalledError } from "../../shared/db/failure.ts";
import type { ChangeOp } from "../../shared/londiste/apply.ts";
import { loadTableSyncs } from "../../shared/londiste/sync-store.ts";
import { SYNC_STATES, type SyncStateName } from "../../shared/londiste/sync-machine.ts";
import { getConsumerInfo, getQueueInfo } from "../../shared/pgq/index.ts";

/** How far replay's consumer is behind the queue: null parts are unknown (not registered yet). */
export interface ReplayLag {
  seconds: number | null;
  ticks: number | null;
}

/** The scrape-time reads; each resolves to null when there is nothing to report. */
export interface ReplayMetricsSources {
  /** The job's queue: the lag metrics' label. */
  queue: string;
  lag(): Promise<ReplayLag | null>;
  /** Tables of the job per state; every state is reported, with 0 when no table is in it. */
  tableStates(): Promise<Map<SyncStateName, number> | null>;
}

export interface ReplayMetrics {
  /** A batch was applied and committed in `seconds`. */
  batchApplied(seconds: number): void;
  /** `n` change events of `table` with operation `op` were applied and committed. */
  applied(table: string, op: ChangeOp, n: number): void;
  /** `n` updates or deletes of `table` found no row (on_missing_row = log); they are in applied() too. */
  missed(table: string, op: ChangeOp, n: number): void;
  /** A failed round (kind from shared/db/failure.ts), or a table put into state error (kind data). */
  error(kind: FailureKind): void;
}

/** Bound of one scrape-time read; Prometheus' own scrape timeout is 10 s by default. */
export const SCRAPE_READ_TIMEOUT_MS = 2000;
/** Reads younger than this are reused: the two lag metrics of one scrape share one read. */
const SCRAPE_READ_REUSE_MS = 1000;

const BATCH_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export function replayMetrics(registry: Registry, sources?: ReplayMetricsSources): ReplayMetrics {
  const lag = sources ? sharedRead(() => sources.lag()) : async () => null;
  const states = sources ? sharedRead(() => sources.tableStates()) : async () => null;

  new Gauge({
    name: "londiste_replay_lag_seconds",
    help: "age of the newest tick whose batch replay has finished (pgq.get_consumer_info lag), read at scrape time",
    // A gauge without labels always has a sample (0 after reset); with one, an unknown lag has none.
    labelNames: ["queue"],
    registers: [registry],
    async collect() {
      const l = await lag();
      this.reset();
      if (sources && l?.seconds != null) this.set({ queue: sources.queue }, l.seconds);
    },
  });
  new Gauge({
    name: "londiste_replay_lag_ticks",
    help: "ticks of the queue after the newest tick whose batch replay has finished, read at scrape time",
    labelNames: ["queue"],
    registers: [registry],
    async collect() {
      const l = await lag();
      this.reset();
      if (sources && l?.ticks != null) this.set({ queue: sources.queue }, l.ticks);
    },
  });
  new Gauge({
    name: "londiste_tables",
    help: "tables of the job on the subscriber per sync state (the sync store), read at scrape time",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const counts = await states();
      this.reset();
      if (counts) for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  const batchSeconds = new Histogram({
    name: "londiste_replay_batch_duration_seconds",
    help: "time to apply one batch, from opening it to finishing it on the provider",
    buckets: BATCH_SECONDS_BUCKETS,
    registers: [registry],
  });
  const changes = new Counter({
    name: "londiste_replay_changes_total",
    help: "row change events applied to the subscriber and committed, per provider table and operation",
    labelNames: ["table", "op"],
    registers: [registry],
  });
  const missed = new Counter({
    name: "londiste_replay_missed_rows_total",
    help: "updates and deletes applied that found no row on the subscriber (on_missing_row = log), per table and operation",
    labelNames: ["table", "op"],
    registers: [registry],
  });
  const errors = new Counter({
    name: "londiste_replay_errors_total",
    help: "failed replay rounds by failure kind (transient, privilege, data), and tables put into state error (data)",
    labelNames: ["kind"],
    registers: [registry],
  });
  for (const kind of ["transient", "privilege", "data"] satisfies FailureKind[]) errors.inc({ kind }, 0);

  return {
    batchApplied: (seconds) => batchSeconds.observe(seconds),
    applied: (table, op, n) => changes.inc({ table, op }, n),
    missed: (table, op, n) => missed.inc({ table, op }, n),
    error: (kind) => errors.inc({ kind }),
  };
}

/** The service's scrape-time reads: the same PgQ call as the status command, and the sync store. */
export function replayScrapeSources(db: { provider: pg.Pool; subscriber: pg.Pool; queue: string; consumer: string }): ReplayMetricsSources {
  return {
    queue: db.queue,
    async lag() {
      const [consumer] = await getConsumerInfo(db.provider, db.queue, db.consumer);
      if (!consumer) return null;
      const [queue] = await getQueueInfo(db.provider, db.queue);
      const ticks = queue?.lastTickId != null ? Math.max(0, queue.lastTickId - consumer.lastTick) : null;
      return { seconds: consumer.lagSeconds, ticks };
    },
    async tableStates() {
      const counts = new Map<SyncStateName, number>(SYNC_STATES.map((s) => [s, 0]));
      try {
        for (const t of await loadTableSyncs(db.subscriber, db.queue)) counts.set(t.sync.state, (counts.get(t.sync.state) ?? 0) + 1);
      } catch (error) {
        // No londiste schema on the subscriber yet: no tables.
        if (!isNotInstalledError(error)) throw error;
      }
      return counts;
    },
  };
}

/**
 * A scrape-time read that never throws: null on failure or after
 * SCRAPE_READ_TIMEOUT_MS; one in flight at a time, reused for
 * SCRAPE_READ_REUSE_MS after it settles.
 */
function sharedRead<T>(read: () => Promise<T | null>): () => Promise<T | null> {
  let current: { promise: Promise<T | null>; settledAt: number | undefined } | undefined;
  return () => {
    if (current && (current.settledAt === undefined || Date.now() - current.settledAt < SCRAPE_READ_REUSE_MS)) return current.promise;
    const entry: { promise: Promise<T | null>; settledAt: number | undefined } = { promise: Promise.resolve(null), settledAt: undefined };
    const settled = read()
      .catch(() => null)
      .finally(() => (entry.settledAt = Date.now()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), SCRAPE_READ_TIMEOUT_MS);
      timer.unref();
    });
    entry.promise = Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
    current = entry;
    return entry.promise;
  };
}
