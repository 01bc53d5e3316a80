/**
 * The ticker tests' own load: event producers whose transactions stay open for a random
 * while, so tick snapshots have transactions in progress. The process harness, the pgqadm
 * command line and the tick readers they use live in test/support/.
 */
import pg from "pg";
import { stopAtCleanup } from "../support/processes.ts";
import { sleep } from "../support/wait.ts";

export interface Producer {
  /** Events committed so far. */
  committed(): number;
  /** Stops producing; resolves to the number of events committed. */
  stop(): Promise<number>;
}

/**
 * Keeps inserting events into `queue` from `connections` parallel sessions (a pool of its own
 * on `databaseUrl`, so the test's pool stays free), each event in its own short transaction
 * that stays open for 0..2×`holdMs` (random), so tick snapshots have transactions in
 * progress. stop() ends it and returns how many events were committed; the cleanup hooks of
 * useProcessCleanup stop a producer a test left running.
 */
export function produceEvents(
  databaseUrl: string,
  queue: string,
  options: { connections?: number; holdMs?: number } = {},
): Producer {
  const { connections = 2, holdMs = 20 } = options;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: connections });
  pool.on("error", () => {}); // idle clients terminated by a test
  let stopping = false;
  let committed = 0;
  const workers = Array.from({ length: connections }, async () => {
    while (!stopping) {
      let client;
      try {
        client = await pool.connect();
      } catch {
        await sleep(100);
        continue;
      }
      try {
        while (!stopping) {
          await client.query("begin");
          await client.query("select pgq.insert_event($1, 'load', 'payload')", [queue]);
          // Random hold times, so transactions end out of order and tick snapshots have xip entries.
          if (holdMs > 0) await client.query("select pg_sleep($1)", [(Math.random() * 2 * holdMs) / 1000]);
          await client.query("commit");
          committed++;
        }
        client.release();
      } catch (error) {
        client.release(error as Error);
        await sleep(100);
      }
    }
  });
  let stopped: Promise<number> | undefined;
  const producer: Producer = {
    committed: () => committed,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        await Promise.all(workers);
        await pool.end().catch(() => {});
        release();
        return committed;
      })()),
  };
  const release = stopAtCleanup(producer);
  return producer;
}
