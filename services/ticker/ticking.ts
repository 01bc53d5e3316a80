/**
 * One tick round: ask PgQ to tick every queue that is due. The decision
 * (count threshold, max lag, idle slow-down) is pgq.ticker's; this only
 * calls it for each queue the ticker handles, in one statement.
 */
import type { Queryable } from "../../shared/db/queryable.ts";

export interface TickResult {
  queue: string;
  tickId: number;
  time: Date;
}

export async function tickDueQueues(db: Queryable): Promise<TickResult[]> {
  const { rows } = await db.query<{ queue_name: string; tick_id: string | null; now: Date }>(
    `select queue_name, pgq.ticker(queue_name) as tick_id, clock_timestamp() as now
       from pgq.queue
      where not queue_external_ticker and not queue_ticker_paused
      order by queue_id`,
  );
  return rows.filter((r) => r.tick_id !== null).map((r) => ({ queue: r.queue_name, tickId: Number(r.tick_id), time: r.now }));
}
