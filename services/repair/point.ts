/**
 * A consistent point: a provider transaction and a subscriber transaction
 * that see the same replicated state, so the tables can be compared.
 *
 * Snapshot method (default; no table is locked, writes go on):
 *  1. claim replay's hold row on the subscriber (tick -1 for now);
 *  2. provider connection A: pg_advisory_lock(queueTick class, queue_id), the
 *     ticker's per-queue lock, so no tick is inserted meanwhile; reserve
 *     the tick id T = nextval(queue_tick_seq); set the hold to T (commit)
 *     BEFORE the tick exists, so replay cannot pass T unnoticed;
 *  3. A: begin repeatable read; pg_export_snapshot(); connection B: begin
 *     repeatable read read only; set transaction snapshot (B reads the
 *     provider); A: londiste.tick_at_snapshot(queue, T), which records A's
 *     transaction snapshot, i.e. B's, as the snapshot of tick T; commit;
 *     unlock. So B sees exactly the changes of the batches up to T;
 *  4. wait until replay's recorded tick is T (it stops there, held);
 *  5. subscriber connection S: begin repeatable read read only and read
 *     the recorded tick in that snapshot: it must be T (then S sees exactly
 *     the batches up to T), else start over;
 *  6. release the hold: replay goes on while the reads run.
 * For writing (repair --apply) step 5 opens a read-write transaction that
 * takes replay's position lock and checks the recorded tick is still T;
 * the hold stays until it commits: the subscriber cannot move meanwhile.
 *
 * Lock method (Skytools' original, --lock), per table: LOCK TABLE IN SHARE
 * MODE on a provider connection, two forced ticks, wait until replay
 * records the second, then the two snapshots, then unlock; at most waitMs
 * from the lock on. For writing the lock is kept until commit.
 */
import { lockConsumerPosition, recordedTick } from "../../shared/londiste/position.ts";
import type pg from "pg";
import { CommandError } from "../../shared/bus/replies.ts";
import { quoteLiteral } from "../../shared/db/sql-text.ts";
import { ADVISORY_LOCKS } from "../../shared/db/advisory-locks.ts";
import { sleep } from "../../shared/sleep.ts";
import type { RepairContext } from "./context.ts";
import { ReplayHold } from "./hold.ts";

/** The ticker's per-queue advisory lock class (pgq.ticker_lock). */
export const TICKER_LOCK_CLASS = ADVISORY_LOCKS.queueTick.classId;

export type PointMethod = "snapshot" | "lock";

export interface PointOptions {
  /** Seconds a hold lives without a refresh (a dead worker's hold is gone after this). */
  holdSeconds: number;
  /** How long to wait for replay to reach the point (snapshot), or for the whole lock dance (lock). */
  waitMs: number;
  /** Identifies the request in the hold row. */
  owner: string;
  /** Open the subscriber side for writing (repair --apply). */
  forWrite: boolean;
}

export interface ConsistentPoint {
  method: PointMethod;
  /** The tick the subscriber stands at. */
  tick: number;
  /** Provider: a read-only repeatable-read transaction at the point. */
  provider: pg.PoolClient;
  /** Subscriber: read-only repeatable read at the point, or (forWrite) a read-write transaction held at it. */
  subscriber: pg.PoolClient;
  /** Ends both transactions, releases the hold or lock; throws only when a requested subscriber commit fails. */
  close(commitSubscriber?: boolean): Promise<void>;
}

class Retry extends Error {}

/** Ends a client's transaction and gives it back; a client whose connection broke is destroyed. */
async function finish(client: pg.PoolClient | undefined, sql = "rollback"): Promise<void> {
  if (!client) return;
  let broken: Error | undefined;
  try {
    await client.query(sql);
  } catch (error) {
    broken = error as Error;
  }
  client.release(broken);
}

/** Commits (throwing when the commit fails) or rolls back the subscriber's transaction, and gives the client back. */
async function endSubscriber(client: pg.PoolClient, commit: boolean): Promise<void> {
  if (!commit) return finish(client);
  try {
    await client.query("commit");
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
  client.release();
}

interface QueueRow {
  queue_id: number;
  queue_tick_seq: string;
  queue_external_ticker: boolean;
}

async function queueRow(ctx: RepairContext): Promise<QueueRow> {
  const { rows } = await ctx.provider.query<QueueRow>(
    "select queue_id, queue_tick_seq, queue_external_ticker from pgq.queue where queue_name = $1",
    [ctx.queue],
  );
  if (!rows[0]) throw new CommandError("not_found", `no such queue on the provider: ${ctx.queue}`);
  if (rows[0].queue_external_ticker) throw new CommandError("conflict", `queue ${ctx.queue} has an external tick source: compare/repair cannot tick it`);
  return rows[0];
}

// ------------------------------------------------------------------ snapshot

export async function snapshotPoint(ctx: RepairContext, options: PointOptions, attempts = 3): Promise<ConsistentPoint> {
  const queue = await queueRow(ctx);
  for (let attempt = 1; ; attempt++) {
    try {
      return await snapshotAttempt(ctx, queue, options);
    } catch (error) {
      if (!(error instanceof Retry) || attempt >= attempts) {
        throw error instanceof Retry ? new CommandError("unavailable", `no consistent point after ${attempts} attempts: ${error.message}`) : error;
      }
      ctx.log.warn({ attempt, reason: error.message }, "consistent point missed; starting over");
    }
  }
}

async function snapshotAttempt(ctx: RepairContext, queue: QueueRow, options: PointOptions): Promise<ConsistentPoint> {
  const hold = await ReplayHold.claim(ctx.subscriber, ctx.consumer, options.owner, {
    holdSeconds: options.holdSeconds,
    waitMs: options.waitMs,
    log: ctx.log,
    signal: ctx.signal,
  });
  let reader: pg.PoolClient | undefined;
  let sub: pg.PoolClient | undefined;
  try {
    const made = await tickAtSnapshot(ctx, queue, hold);
    reader = made.reader;
    const tick = made.tick;
    ctx.notifyTick(tick);
    ctx.progress({ phase: "point", tick, message: `tick ${tick} made at the provider snapshot; waiting for replay to reach it` });
    await waitForReplay(ctx, tick, options.waitMs, (t) => {
      if (t !== null && t > tick) throw new Retry(`replay went past tick ${tick} (at ${t}): the hold was lost`);
      return t === tick;
    });
    sub = await ctx.subscriber.connect();
    if (options.forWrite) {
      await sub.query("begin");
      await sub.query("set local session_replication_role = replica");
      await lockConsumerPosition(sub, ctx.consumer);
    } else {
      await sub.query("begin isolation level repeatable read read only");
    }
    // Read in the subscriber snapshot: the tick and the batches up to it commit together.
    const seen = await recordedTick(sub, ctx.consumer);
    if (seen !== tick) throw new Retry(`the subscriber's snapshot is at tick ${seen}, not ${tick}`);
    if (!options.forWrite) await hold.release();
    const provider = reader;
    const subscriber = sub;
    return {
      method: "snapshot",
      tick,
      provider,
      subscriber,
      close: async (commit = false) => {
        await finish(provider);
        try {
          await endSubscriber(subscriber, commit);
        } finally {
          await hold.release();
        }
      },
    };
  } catch (error) {
    await finish(reader);
    await finish(sub);
    await hold.release();
    throw error;
  }
}

/**
 * Steps 2 and 3: the tick whose snapshot is the returned reader's. The
 * reader is a provider client in a read-only repeatable-read transaction.
 */
async function tickAtSnapshot(ctx: RepairContext, queue: QueueRow, hold: ReplayHold): Promise<{ tick: number; reader: pg.PoolClient }> {
  const a = await ctx.provider.connect();
  let aBroken: Error | undefined;
  let reader: pg.PoolClient | undefined;
  try {
    await a.query("set lock_timeout = '10s'");
    await a.query("select pg_catalog.pg_advisory_lock($1, $2)", [TICKER_LOCK_CLASS, queue.queue_id]);
    try {
      const { rows } = await a.query<{ t: string }>("select pg_catalog.nextval($1::regclass) as t", [queue.queue_tick_seq]);
      const tick = Number(rows[0]!.t);
      await hold.setTick(tick);
      await a.query("begin isolation level repeatable read");
      const snap = (await a.query<{ s: string }>("select pg_catalog.pg_export_snapshot() as s")).rows[0]!.s;
      reader = await ctx.provider.connect();
      await reader.query("begin isolation level repeatable read read only");
      await reader.query(`set transaction snapshot ${quoteLiteral(snap)}`);
      await a.query("select londiste.tick_at_snapshot($1, $2)", [ctx.queue, tick]);
      await a.query("commit");
      return { tick, reader };
    } catch (error) {
      await a.query("rollback").catch((e: unknown) => (aBroken = e as Error));
      await finish(reader);
      reader = undefined;
      throw error;
    } finally {
      await a.query("select pg_catalog.pg_advisory_unlock($1, $2)", [TICKER_LOCK_CLASS, queue.queue_id]).catch((e: unknown) => (aBroken = e as Error));
      await a.query("reset lock_timeout").catch((e: unknown) => (aBroken = e as Error));
    }
  } finally {
    a.release(aBroken);
  }
}

/** Polls the subscriber's recorded tick until `reached` says so; CommandError after waitMs. */
async function waitForReplay(ctx: RepairContext, tick: number, waitMs: number, reached: (t: number | null) => boolean): Promise<number | null> {
  const deadline = Date.now() + waitMs;
  let last: number | null = null;
  for (let round = 0; ; round++) {
    ctx.signal.throwIfAborted();
    last = await recordedTick(ctx.subscriber, ctx.consumer);
    if (reached(last)) return last;
    if (Date.now() >= deadline) {
      throw new CommandError(
        "unavailable",
        `replay did not reach tick ${tick} within ${waitMs / 1000} s (the subscriber is at tick ${last ?? "none"}): is "londiste CONFIG replay" running?`,
      );
    }
    // Wake replay now and then in case it missed the notice (it also polls every loop_delay).
    if (round % 20 === 19) ctx.notifyTick(tick);
    await sleep(50, ctx.signal);
  }
}

// ------------------------------------------------------------------ lock

async function lastTick(ctx: RepairContext): Promise<number> {
  const { rows } = await ctx.provider.query<{ t: string | null }>(
    `select pg_catalog.max(t.tick_id) as t from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = $1`,
    [ctx.queue],
  );
  return Number(rows[0]!.t ?? 0);
}

/** The original method for one table (its canonical provider name, from the catalog). */
export async function lockPoint(ctx: RepairContext, tableName: string, options: PointOptions): Promise<ConsistentPoint> {
  await queueRow(ctx);
  // The name put into LOCK TABLE is the catalog's own quoted form.
  const { rows: found } = await ctx.provider.query<{ name: string | null }>(
    `select pg_catalog.format('%I.%I', n.nspname, c.relname) as name
       from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.oid = pg_catalog.to_regclass($1)`,
    [tableName],
  );
  const table = found[0]?.name;
  if (!table) throw new CommandError("not_found", `${tableName}: no such table on the provider`);
  const started = Date.now();
  const left = () => Math.max(1, options.waitMs - (Date.now() - started));
  const locker = await ctx.provider.connect();
  let reader: pg.PoolClient | undefined;
  let sub: pg.PoolClient | undefined;
  let unlocked = false;
  const unlock = async () => {
    if (unlocked) return;
    unlocked = true;
    await finish(locker);
  };
  try {
    await locker.query("begin");
    await locker.query(`set local lock_timeout = ${Math.ceil(options.waitMs)}`);
    await locker.query(`lock table ${table} in share mode`);
    // Two ticks after the lock: the first may have been under way with a snapshot from before it.
    let tick = await lastTick(ctx);
    for (let i = 0; i < 2; i++) {
      await ctx.provider.query("select pgq.force_tick($1)", [ctx.queue]);
      const before = tick;
      for (;;) {
        ctx.signal.throwIfAborted();
        tick = await lastTick(ctx);
        if (tick > before) break;
        if (Date.now() - started > options.waitMs) throw new CommandError("unavailable", "Ticker seems dead: no new tick after force_tick");
        await sleep(100, ctx.signal);
      }
    }
    ctx.notifyTick(tick);
    const target = tick;
    try {
      await waitForReplay(ctx, target, left(), (t) => t !== null && t >= target);
    } catch (error) {
      if (error instanceof CommandError) throw new CommandError("unavailable", `Consumer lagging too much, exiting: ${error.message}`);
      throw error;
    }
    reader = await ctx.provider.connect();
    await reader.query("begin isolation level repeatable read read only");
    await reader.query("select 1");
    sub = await ctx.subscriber.connect();
    if (options.forWrite) {
      await sub.query("begin");
      await sub.query("set local session_replication_role = replica");
    } else {
      await sub.query("begin isolation level repeatable read read only");
    }
    const seen = (await recordedTick(sub, ctx.consumer)) ?? 0;
    if (!options.forWrite) await unlock();
    const provider = reader;
    const subscriber = sub;
    return {
      method: "lock",
      tick: seen,
      provider,
      subscriber,
      close: async (commit = false) => {
        await finish(provider);
        try {
          await endSubscriber(subscriber, commit);
        } finally {
          if (options.forWrite) await unlock();
        }
      },
    };
  } catch (error) {
    await finish(reader);
    await finish(sub);
    await unlock();
    throw error;
  }
}
