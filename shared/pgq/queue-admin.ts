/**
 * Queue administration over the PgQ SQL API: create/drop, settings,
 * ticking, maintenance and the status views. Each function is one call of
 * the matching pgq.* function.
 */
import type { Queryable } from "../db/queryable.ts";
import { pgqCall } from "./errors.ts";
import { toFloatOrNull, toSafeInt, toSafeIntOrNull } from "./numbers.ts";
import type { ConsumerInfo, QueueInfo } from "./types.ts";

async function scalar<T>(db: Queryable, sql: string, params: unknown[]): Promise<T> {
  const { rows } = await pgqCall(db.query(sql, params));
  return (rows[0] as { v: T }).v;
}

/** Returns true when created, false when it existed. */
export async function createQueue(db: Queryable, queue: string): Promise<boolean> {
  return (await scalar<number>(db, "select pgq.create_queue($1) as v", [queue])) === 1;
}

export async function dropQueue(db: Queryable, queue: string): Promise<void> {
  await scalar(db, "select pgq.drop_queue($1) as v", [queue]);
}

/** Sets one queue setting (ticker_max_count, ticker_max_lag, ticker_idle_period, rotation_period, ticker_paused, external_ticker). */
export async function setQueueConfig(db: Queryable, queue: string, key: string, value: string): Promise<void> {
  await scalar(db, "select pgq.set_queue_config($1, $2, $3) as v", [queue, key, value]);
}

/** Ticks one queue now (pgq.ticker, as in Skytools 2); returns the new tick id, null when its ticker is paused. */
export async function tickQueue(db: Queryable, queue: string): Promise<number | null> {
  return toSafeIntOrNull(await scalar<string | null>(db, "select pgq.ticker($1) as v", [queue]));
}

/** Ticks every queue now (not external, not paused); returns how many got a tick. */
export async function tickAll(db: Queryable): Promise<number> {
  return toSafeInt(await scalar<string>(db, "select pgq.ticker() as v", []));
}

/** Ticks one queue if the tick policy says a tick is due (pgq.tick_if_due); returns the new tick id or null. */
export async function tickIfDue(db: Queryable, queue: string): Promise<number | null> {
  return toSafeIntOrNull(await scalar<string | null>(db, "select pgq.tick_if_due($1) as v", [queue]));
}

/** Asks for a tick at the ticker's next check; returns the current last tick id. */
export async function forceTick(db: Queryable, queue: string): Promise<number> {
  return toSafeInt(await scalar<string>(db, "select pgq.force_tick($1) as v", [queue]));
}

/**
 * Makes a tick now (pgq.ticker), in the caller's transaction (autocommit
 * on a pool). For tools and tests; a running ticker service ticks on its
 * own when the tick policy says so.
 */
export async function tickNow(db: Queryable, queue: string): Promise<number> {
  const tick = await tickQueue(db, queue);
  if (tick === null) throw new Error(`queue ${queue}: no tick (ticker paused?)`);
  return tick;
}

interface QueueInfoRow {
  queue_name: string;
  queue_ntables: number;
  queue_cur_table: number;
  rotation_s: number;
  queue_switch_time: Date;
  queue_external_ticker: boolean;
  queue_ticker_paused: boolean;
  queue_ticker_max_count: number;
  max_lag_s: number;
  idle_s: number;
  ticker_lag_s: number | null;
  ev_per_sec: number | null;
  ev_new: string | null;
  last_tick_id: string | null;
}

export async function getQueueInfo(db: Queryable, queue?: string): Promise<QueueInfo[]> {
  const { rows } = await pgqCall(
    db.query<QueueInfoRow>(
      `select queue_name, queue_ntables, queue_cur_table,
              extract(epoch from queue_rotation_period)::float8 as rotation_s,
              queue_switch_time, queue_external_ticker, queue_ticker_paused,
              queue_ticker_max_count,
              extract(epoch from queue_ticker_max_lag)::float8 as max_lag_s,
              extract(epoch from queue_ticker_idle_period)::float8 as idle_s,
              extract(epoch from ticker_lag)::float8 as ticker_lag_s,
              ev_per_sec, ev_new, last_tick_id
         from pgq.get_queue_info($1::text)
        where queue_name is not null`,
      [queue ?? null],
    ),
  );
  return rows.map((r) => ({
    queueName: r.queue_name,
    ntables: r.queue_ntables,
    curTable: r.queue_cur_table,
    rotationPeriodSeconds: r.rotation_s,
    switchTime: r.queue_switch_time,
    externalTicker: r.queue_external_ticker,
    tickerPaused: r.queue_ticker_paused,
    tickerMaxCount: r.queue_ticker_max_count,
    tickerMaxLagSeconds: r.max_lag_s,
    tickerIdlePeriodSeconds: r.idle_s,
    tickerLagSeconds: toFloatOrNull(r.ticker_lag_s),
    eventsPerSecond: toFloatOrNull(r.ev_per_sec),
    newEvents: toSafeIntOrNull(r.ev_new),
    lastTickId: toSafeIntOrNull(r.last_tick_id),
  }));
}

interface ConsumerInfoRow {
  queue_name: string;
  consumer_name: string;
  lag_s: number | null;
  last_seen_s: number;
  last_tick: string;
  current_batch: string | null;
  next_tick: string | null;
  pending_events: string | null;
}

export async function getConsumerInfo(db: Queryable, queue?: string, consumer?: string): Promise<ConsumerInfo[]> {
  const { rows } = await pgqCall(
    db.query<ConsumerInfoRow>(
      `select queue_name, consumer_name,
              extract(epoch from lag)::float8 as lag_s,
              extract(epoch from last_seen)::float8 as last_seen_s,
              last_tick, current_batch, next_tick, pending_events
         from pgq.get_consumer_info($1::text, $2::text)`,
      [queue ?? null, consumer ?? null],
    ),
  );
  return rows.map((r) => ({
    queueName: r.queue_name,
    consumerName: r.consumer_name,
    lagSeconds: toFloatOrNull(r.lag_s),
    lastSeenSeconds: r.last_seen_s,
    lastTick: toSafeInt(r.last_tick),
    currentBatch: toSafeIntOrNull(r.current_batch),
    nextTick: toSafeIntOrNull(r.next_tick),
    pendingEvents: toSafeIntOrNull(r.pending_events),
  }));
}

/** Rotation step 1 for one queue; true when the queue switched slot tables. */
export async function rotateStep1(db: Queryable, queue: string): Promise<boolean> {
  return (await scalar<number>(db, "select pgq.maint_rotate_tables_step1($1) as v", [queue])) === 1;
}

/** Rotation step 2; must run in a transaction after step 1 committed. */
export async function rotateStep2(db: Queryable): Promise<number> {
  return scalar<number>(db, "select pgq.maint_rotate_tables_step2() as v", []);
}

/** Moves due retry events back into their queues; returns how many moved in this call. */
export async function moveRetryEvents(db: Queryable): Promise<number> {
  return scalar<number>(db, "select pgq.maint_retry_events() as v", []);
}

export interface NewTickOptions {
  /**
   * A pg_snapshot (text form) the tick must not be older than: every
   * transaction visible in it is visible in the tick's snapshot too.
   */
  notOlderThan?: string;
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Between looks for the tick (default 100 ms). */
  pollMs?: number;
  /** Stops waiting (throws the signal's reason). */
  signal?: AbortSignal;
}

/**
 * A tick made after this call began (and, with notOlderThan, after that
 * snapshot): force_tick (so a running ticker service ticks too), then
 * pgq.ticker; the first tick after the one that was newest at force_tick,
 * whoever made it. Asks again every second while
 * none appears; throws after timeoutMs (e.g. the queue's ticker is
 * paused). Each statement must commit on its own: pass a pool or an
 * autocommit client (the ticker needs READ COMMITTED).
 */
export async function forceNewTick(db: Queryable, queue: string, options: NewTickOptions = {}): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const pollMs = options.pollMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  const before = await forceTick(db, queue);
  let askedAt = Date.now();
  await tickQueue(db, queue);
  for (;;) {
    const { rows } = await pgqCall(
      db.query<{ tick_id: string }>(
        `select t.tick_id
           from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
          where q.queue_name = $1 and t.tick_id > $2
            and ($3::text is null
                 or (pg_snapshot_xmin(t.tick_snapshot) >= pg_snapshot_xmin($3::text::pg_snapshot)
                     and pg_snapshot_xmax(t.tick_snapshot) >= pg_snapshot_xmax($3::text::pg_snapshot)
                     and not exists (select 1 from pg_snapshot_xip(t.tick_snapshot) x
                                      where pg_visible_in_snapshot(x, $3::text::pg_snapshot))))
          order by t.tick_queue, t.tick_id
          limit 1`,
        [queue, before, options.notOlderThan ?? null],
      ),
    );
    if (rows[0]) return toSafeInt(rows[0].tick_id);
    options.signal?.throwIfAborted();
    if (Date.now() > deadline) throw new Error(`queue ${queue}: no new tick within ${timeoutMs} ms of force_tick (ticker paused?)`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    if (Date.now() - askedAt >= 1000) {
      askedAt = Date.now();
      await forceTick(db, queue);
      await tickQueue(db, queue);
    }
  }
}
