/**
 * Reading a PgQ queue's ticks in tests: the tick history, the newest tick, waiting for a
 * new one, and the check that tick snapshots never go backwards.
 */
import type pg from "pg";
import { waitForProgress } from "./wait.ts";

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

/**
 * Waits until the queue has a tick newer than `after`; returns its id. Nothing is measured
 * to move before that tick, so `stallMs` (machine time, see wait.ts) bounds the whole wait.
 */
export function waitForTickAfter(db: Queryable, queue: string, after: number, stallMs = 30_000): Promise<number> {
  return waitForProgress({
    what: `a tick of ${queue} after tick ${after}`,
    measure: () => lastTickId(db, queue),
    done: (id) => id > after,
    stallMs,
    intervalMs: 50,
  });
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
