/**
 * Helpers for the PgQ concurrency scenarios (concurrent ticks, a consumer
 * crashing with a batch open, long and rolled-back transactions, mid-stream
 * registration, the retry mover, the rotation guard, the ticker policy, the
 * randomized soak): dedicated connections that hold transactions open,
 * draining batches, checks over tick snapshots, and a seeded random
 * generator. Ticking and waiting for older transactions are the PgQ tests'
 * (../pgq/helpers.ts).
 */
import pg from "pg";
import type { Queryable } from "../../shared/db/queryable.ts";
import type { TestDatabase } from "../support/db.ts";
import { num } from "../support/query.ts";

export { sleep } from "../support/wait.ts";
export { num, value } from "../support/query.ts";
export { switchStep2, tick, waitForOlderTransactions } from "../pgq/helpers.ts";

/** First column of every row as numbers. */
export async function nums(db: Queryable, sql: string, params: unknown[] = []): Promise<number[]> {
  const { rows, fields } = await db.query(sql, params);
  return rows.map((r) => Number((r as Record<string, unknown>)[fields[0]!.name]));
}

/**
 * Separate connections (not pool clients), so a test can hold several
 * transactions open at once and kill them like a crashed process would.
 */
export class Connections {
  private readonly open: pg.Client[] = [];

  constructor(private readonly url: string) {}

  async connect(applicationName = "pgq-concurrency"): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url, application_name: applicationName });
    client.on("error", () => {}); // killed on purpose in some tests; the next query reports it
    await client.connect();
    this.open.push(client);
    return client;
  }

  async closeAll(): Promise<void> {
    const all = this.open.splice(0);
    await Promise.all(all.map((c) => c.end().catch(() => {})));
  }
}

/** The transaction's txid (assigning one if needed), as a number. */
export async function currentTxid(db: Queryable): Promise<number> {
  return (await num(db, "select pg_current_xact_id()::text::int8"))!;
}

export interface Ev {
  ev_id: number;
  ev_time: Date;
  ev_txid: number;
  ev_retry: number | null;
  ev_type: string | null;
  ev_data: string | null;
  ev_extra1: string | null;
  ev_extra2: string | null;
  ev_extra3: string | null;
  ev_extra4: string | null;
}

/** pgq.get_batch_events with ids as numbers. */
export async function batchRows(db: Queryable, batchId: number): Promise<Ev[]> {
  const { rows } = await db.query<Omit<Ev, "ev_id" | "ev_txid"> & { ev_id: string; ev_txid: string }>(
    "select * from pgq.get_batch_events($1)",
    [batchId],
  );
  return rows.map((r) => ({ ...r, ev_id: Number(r.ev_id), ev_txid: Number(r.ev_txid) }));
}

export interface Batch {
  batchId: number;
  prevTick: number;
  curTick: number;
  events: Ev[];
}

/** Opens (or reopens) the consumer's batch; null when there is none. */
export async function openBatch(db: Queryable, queue: string, consumer: string): Promise<Omit<Batch, "events"> | null> {
  const { rows } = await db.query<{ batch_id: string | null; prev_tick_id: string; cur_tick_id: string }>(
    "select batch_id, prev_tick_id, cur_tick_id from pgq.next_batch_info($1, $2)",
    [queue, consumer],
  );
  const r = rows[0]!;
  if (r.batch_id === null) return null;
  return { batchId: Number(r.batch_id), prevTick: Number(r.prev_tick_id), curTick: Number(r.cur_tick_id) };
}

/** Opens the next batch, reads it and finishes it; null when there was none. */
export async function drainOne(db: Queryable, queue: string, consumer: string): Promise<Batch | null> {
  const b = await openBatch(db, queue, consumer);
  if (!b) return null;
  const events = await batchRows(db, b.batchId);
  if ((await num(db, "select pgq.finish_batch($1)", [b.batchId])) !== 1) throw new Error(`finish_batch ${b.batchId} failed`);
  return { ...b, events };
}

/** Drains every batch there is; returns them in order. */
export async function drainAll(db: Queryable, queue: string, consumer: string): Promise<Batch[]> {
  const out: Batch[] = [];
  for (;;) {
    const b = await drainOne(db, queue, consumer);
    if (!b) return out;
    out.push(b);
  }
}

export const ids = (events: Ev[]) => events.map((e) => e.ev_id);
export const allIds = (batches: Batch[]) => batches.flatMap((b) => ids(b.events));

/** The consumer's subscription id. */
export async function subId(db: Queryable, queue: string, consumer: string): Promise<number> {
  return (await num(
    db,
    `select s.sub_id from pgq.subscription s
       join pgq.queue q on q.queue_id = s.sub_queue
       join pgq.consumer c on c.co_id = s.sub_consumer
      where q.queue_name = $1 and c.co_name = $2`,
    [queue, consumer],
  ))!;
}

export async function queueId(db: Queryable, queue: string): Promise<number> {
  return (await num(db, "select queue_id from pgq.queue where queue_name = $1", [queue]))!;
}

/** The consumer's position (sub_last_tick). */
export async function lastTick(db: Queryable, queue: string, consumer: string): Promise<number> {
  return (await num(
    db,
    `select s.sub_last_tick from pgq.subscription s
       join pgq.queue q on q.queue_id = s.sub_queue
       join pgq.consumer c on c.co_id = s.sub_consumer
      where q.queue_name = $1 and c.co_name = $2`,
    [queue, consumer],
  ))!;
}

/**
 * Consecutive ticks (by id) of a queue where the later snapshot does not
 * contain everything the earlier one saw: some txid visible in tick n is
 * not visible in tick n+1. Such a txid is either in xip(n+1) or in
 * [xmax(n+1), xmax(n)); both sets are checked exactly.
 */
export async function snapshotRegressions(db: Queryable, queueName: string): Promise<Array<{ a: string; b: string }>> {
  const { rows } = await db.query<{ a: string; b: string }>(
    `with t as (
        select tick_id, tick_snapshot as s,
               lead(tick_id) over w as id2, lead(tick_snapshot) over w as s2,
               tick_time, lead(tick_time) over w as time2
          from pgq.tick
         where tick_queue = (select queue_id from pgq.queue where queue_name = $1)
        window w as (order by tick_id))
     select tick_id::text || ' ' || s::text as a, id2::text || ' ' || s2::text as b
       from t
      where id2 is not null
        and (time2 < tick_time
             or exists (select 1 from pg_snapshot_xip(s2) x where pg_visible_in_snapshot(x, s))
             or exists (select 1
                          from generate_series(pg_snapshot_xmax(s2)::text::int8,
                                               pg_snapshot_xmax(s)::text::int8 - 1) g
                         where pg_visible_in_snapshot(g::text::xid8, s)))`,
    [queueName],
  );
  return rows;
}

/** mulberry32: a small seeded generator, so a failing random run can be replayed with its seed. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number; chance(p: number): boolean } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
  };
}

/** Creates a queue with PgQ installed in a fresh database. */
export async function setupQueue(db: TestDatabase, queue: string, consumers: string[] = []): Promise<void> {
  await db.query("select pgq.create_queue($1)", [queue]);
  for (const c of consumers) await db.query("select pgq.register_consumer($1, $2)", [queue, c]);
}
