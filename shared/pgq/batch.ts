/**
 * Consumer-side primitives over the PgQ SQL API: registration, opening a
 * batch, streaming its events, tagging events for retry or failure, and
 * finishing the batch.
 *
 * The life of a consumer (the same steps as PgQ's own):
 *   1. registerConsumer once;
 *   2. nextBatch (commit it): null means no new tick yet, wait;
 *   3. read the events with batchEvents, process them;
 *   4. retryEvent / failEvent for those that could not be processed;
 *   5. finishBatch, in the same transaction as step 4.
 * An open batch is sticky: after a crash nextBatch returns the same batch,
 * with the same events, until it is finished.
 */
import type pg from "pg";
import Cursor from "pg-cursor";
import { closeCursor } from "../db/cursor-close.ts";
import type { Queryable } from "../db/queryable.ts";
import { pgqCall } from "./errors.ts";
import { toSafeInt } from "./numbers.ts";
import type { BatchInfo, PgqEvent } from "./types.ts";

/** Returns true when newly registered. */
export async function registerConsumer(db: Queryable, queue: string, consumer: string, tickId?: number): Promise<boolean> {
  const { rows } = await pgqCall(
    tickId === undefined
      ? db.query<{ v: number }>("select pgq.register_consumer($1, $2) as v", [queue, consumer])
      : db.query<{ v: number }>("select pgq.register_consumer($1, $2, $3) as v", [queue, consumer, tickId]),
  );
  return rows[0]!.v === 1;
}

export async function unregisterConsumer(db: Queryable, queue: string, consumer: string): Promise<void> {
  await pgqCall(db.query("select pgq.unregister_consumer($1, $2)", [queue, consumer]));
}

interface NextBatchRow {
  batch_id: string | null;
  cur_tick_id: string | null;
  prev_tick_id: string | null;
  cur_tick_time: Date | null;
  prev_tick_time: Date | null;
}

export interface BatchLimits {
  /** Only ticks at least this old (seconds). */
  minLagSeconds?: number;
  /** End at the first tick with at least this many new events... */
  minCount?: number;
  /** ...or at least this far (seconds) from the position. */
  minIntervalSeconds?: number;
}

/**
 * Opens the next batch (or returns the open one). Run it in autocommit or
 * commit right after: the batch must be visible as open before processing.
 */
export async function nextBatch(
  db: Queryable,
  queue: string,
  consumer: string,
  limits: BatchLimits = {},
): Promise<BatchInfo | null> {
  const seconds = (s: number | undefined) => (s === undefined ? null : `${s} seconds`);
  const { rows } = await pgqCall(
    db.query<NextBatchRow>(
      `select batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time
         from pgq.next_batch_custom($1, $2, $3::interval, $4::int4, $5::interval)`,
      [queue, consumer, seconds(limits.minLagSeconds), limits.minCount ?? null, seconds(limits.minIntervalSeconds)],
    ),
  );
  const row = rows[0];
  if (!row || row.batch_id === null) return null;
  return {
    batchId: toSafeInt(row.batch_id),
    tickId: toSafeInt(row.cur_tick_id!),
    prevTickId: toSafeInt(row.prev_tick_id!),
    tickTime: row.cur_tick_time!,
    prevTickTime: row.prev_tick_time!,
  };
}

/** The newest tick of a queue, null when it has none. */
export async function newestTick(db: Queryable, queue: string): Promise<number | null> {
  const { rows } = await pgqCall(
    db.query<{ t: string | null }>(
      `select (select t.tick_id from pgq.tick t where t.tick_queue = q.queue_id order by t.tick_id desc limit 1)::text as t
         from pgq.queue q where q.queue_name = $1`,
      [queue],
    ),
  );
  return rows[0]?.t == null ? null : toSafeInt(rows[0].t);
}

/**
 * Opens the consumer's next batch spanning the ticks waiting after its
 * position, up to the newest tick that is at most `upTo` (every tick when
 * it is not given), and ending at the first tick at which about
 * `maxEvents` events (by the event sequence) have accumulated: one batch
 * for a backlog of many ticks, as PgQ consumers take when they lag. A
 * batch already open comes back as it is (after a crash, the same ticks);
 * with no tick to merge up to, or when the merged batch cannot be had (a
 * tick came or went meanwhile), the next single tick.
 *
 * The merged batch never ends after `upTo`: pgq.next_batch_custom takes
 * the first tick that is far enough in time or in events, and the tick
 * wanted is one of them.
 */
export async function nextMergedBatch(
  db: Queryable,
  queue: string,
  consumer: string,
  options: { maxEvents: number; upTo?: number },
): Promise<BatchInfo | null> {
  const { rows } = await pgqCall(
    db.query<{ events: string; span: string }>(
      `select (n.tick_event_seq - p.tick_event_seq)::text as events, extract(epoch from n.tick_time - p.tick_time)::text as span
         from pgq.queue q
         join pgq.subscription s on s.sub_queue = q.queue_id
         join pgq.consumer c on c.co_id = s.sub_consumer
         join pgq.tick p on p.tick_queue = q.queue_id and p.tick_id = s.sub_last_tick
         cross join lateral (select t.tick_event_seq, t.tick_time from pgq.tick t
                              where t.tick_queue = q.queue_id and ($3::int8 is null or t.tick_id <= $3::int8)
                              order by t.tick_id desc limit 1) n
        where q.queue_name = $1 and c.co_name = $2 and s.sub_batch is null`,
      [queue, consumer, options.upTo ?? null],
    ),
  );
  // Exact: the epoch difference comes as a decimal of whole microseconds and goes back as the same text, so
  // the first tick that far from the position is the one wanted (an earlier one would need the same tick_time).
  const span = rows[0] ? Number(rows[0].span) : 0;
  if (span > 0) {
    const events = Number(rows[0]!.events);
    const merged = await nextBatch(db, queue, consumer, {
      minIntervalSeconds: span,
      ...(events > options.maxEvents ? { minCount: options.maxEvents } : {}),
    });
    if (merged) return merged;
  }
  return nextBatch(db, queue, consumer);
}

interface EventRow {
  ev_id: string;
  ev_time: Date;
  ev_txid: string;
  ev_retry: number | null;
  ev_type: string | null;
  ev_data: string | null;
  ev_extra1: string | null;
  ev_extra2: string | null;
  ev_extra3: string | null;
  ev_extra4: string | null;
}

function toEvent(row: EventRow): PgqEvent {
  return {
    id: toSafeInt(row.ev_id),
    time: row.ev_time,
    txid: toSafeInt(row.ev_txid),
    retry: row.ev_retry,
    type: row.ev_type,
    data: row.ev_data,
    extra1: row.ev_extra1,
    extra2: row.ev_extra2,
    extra3: row.ev_extra3,
    extra4: row.ev_extra4,
  };
}

/** All events of a batch at once (pgq.get_batch_events). For small batches and tools. */
export async function getBatchEvents(db: Queryable, batchId: number): Promise<PgqEvent[]> {
  const { rows } = await pgqCall(db.query<EventRow>("select * from pgq.get_batch_events($1)", [batchId]));
  return rows.map(toEvent);
}

/**
 * Streams a batch's events in ev_id order through a server-side cursor,
 * `fetchSize` rows at a time, so memory does not grow with the batch. The
 * client must be dedicated to this read until the iteration ends; the
 * read runs in its own transaction on it.
 */
export async function* batchEvents(client: pg.ClientBase, batchId: number, fetchSize = 1000): AsyncGenerator<PgqEvent> {
  const { rows } = await pgqCall(client.query<{ sql: string }>("select pgq.batch_event_sql($1) as sql", [batchId]));
  const cursor = client.query(new Cursor<EventRow>(rows[0]!.sql));
  try {
    for (;;) {
      const chunk = await pgqCall(cursor.read(fetchSize));
      for (const row of chunk) yield toEvent(row);
      if (chunk.length < fetchSize) break;
    }
  } finally {
    await closeCursor(client, cursor);
  }
}

/**
 * Queues an event for redelivery to this consumer after `delaySeconds`
 * (pgq.event_retry_raw: the event is at hand, so no batch lookup).
 * Run it in the transaction that finishes the batch.
 */
export async function retryEvent(
  db: Queryable,
  queue: string,
  consumer: string,
  event: PgqEvent,
  delaySeconds: number,
): Promise<void> {
  await pgqCall(
    db.query(
      `select pgq.event_retry_raw($1, $2, now() + $3 * interval '1 second',
                                  $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [
        queue,
        consumer,
        delaySeconds,
        event.id,
        event.time,
        event.retry,
        event.type,
        event.data,
        event.extra1,
        event.extra2,
        event.extra3,
        event.extra4,
      ],
    ),
  );
}

/** Moves an event of the open batch to the failed queue (pgq.event_failed); true when stored now. */
export async function failEvent(db: Queryable, batchId: number, eventId: number, reason: string): Promise<boolean> {
  const { rows } = await pgqCall(
    db.query<{ v: number }>("select pgq.event_failed($1, $2, $3) as v", [batchId, eventId, reason]),
  );
  return rows[0]!.v === 1;
}

/** Closes the batch; false (with a server WARNING) when it was not open. */
export async function finishBatch(db: Queryable, batchId: number): Promise<boolean> {
  const { rows } = await pgqCall(db.query<{ v: number }>("select pgq.finish_batch($1) as v", [batchId]));
  return rows[0]!.v === 1;
}

