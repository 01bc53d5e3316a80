/**
 * One tick round: ask PgQ to tick every queue that is due. The decision
 * (count threshold, max lag, idle slow-down) is pgq.tick_if_due's; this
 * calls it for each queue the ticker handles (pgq.ticker itself ticks
 * unconditionally, as in Skytools 2). A queue whose tick raises an error
 * (e.g. an invalid snapshot) is reported and skipped, so one broken queue
 * does not stop the others; connection errors propagate.
 */
import type { Queryable } from "../../shared/db/queryable.ts";

export interface TickResult {
  queue: string;
  tickId: number;
  time: Date;
}

export interface TickRound {
  ticks: TickResult[];
  failures: Array<{ queue: string; message: string }>;
}

/**
 * Errors raised by PL/pgSQL (RAISE) or by data: the queue's problem, not the connection's.
 * Also class 40 (deadlock, serialization failure): only that statement was rolled back, the
 * next round tries again (pgq.tick_if_due can deadlock with a concurrent pgq.drop_queue).
 */
function isQueueError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^(P0|22|23|40|42|XX)/.test(code) && code !== "XX000";
}

async function queueExists(db: Queryable, queue: string): Promise<boolean> {
  const { rowCount } = await db.query("select 1 from pgq.queue where queue_name = $1", [queue]);
  return rowCount !== null && rowCount > 0;
}

export async function tickDueQueues(db: Queryable): Promise<TickRound> {
  const round: TickRound = { ticks: [], failures: [] };
  const { rows } = await db.query<{ queue_name: string }>(
    `select queue_name from pgq.queue
      where not queue_external_ticker and not queue_ticker_paused
      order by queue_id`,
  );
  for (const { queue_name } of rows) {
    try {
      const result = await db.query<{ tick_id: string | null; now: Date }>(
        "select pgq.tick_if_due($1) as tick_id, clock_timestamp() as now",
        [queue_name],
      );
      const row = result.rows[0]!;
      if (row.tick_id !== null) round.ticks.push({ queue: queue_name, tickId: Number(row.tick_id), time: row.now });
    } catch (error) {
      // Dropped or renamed since the list was read: pgq.tick_if_due then fails with "no such queue"
      // or, when the drop commits inside it, "could not open relation with OID ..." (XX000).
      // Nothing to report, and no reason to drop the connection. (A broken connection makes
      // this check throw, which propagates as it should.)
      if (!(await queueExists(db, queue_name))) continue;
      if (!isQueueError(error)) throw error;
      round.failures.push({ queue: queue_name, message: (error as Error).message });
    }
  }
  return round;
}
