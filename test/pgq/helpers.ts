/**
 * Small helpers shared by the PgQ tests (also the concurrency scenarios'):
 * reading one value, capturing the server's WARNINGs, ticking, reading
 * batches, and waiting for older transactions to end.
 */
import type pg from "pg";
import type { Queryable } from "../../shared/db/queryable.ts";

export { num, value } from "../support/query.ts";
import { num, value } from "../support/query.ts";
import { waitForProgress } from "../support/wait.ts";

/** Runs `work` on one dedicated client and returns what it produced plus every NOTICE/WARNING text. */
export async function withNotices<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<{ result: T; notices: Array<{ severity: string; message: string }> }> {
  const client = await pool.connect();
  const notices: Array<{ severity: string; message: string }> = [];
  const onNotice = (msg: { severity?: string; message?: string }) => notices.push({ severity: msg.severity ?? "", message: msg.message ?? "" });
  client.on("notice", onNotice);
  try {
    const result = await work(client);
    return { result, notices };
  } finally {
    client.off("notice", onNotice);
    client.release();
  }
}

/** "After a tick": force_tick then ticker(q), each autocommitted; returns the new tick id. */
export async function tick(db: Queryable, queue: string): Promise<number> {
  await db.query("select pgq.force_tick($1)", [queue]);
  const id = await num(db, "select pgq.ticker($1)", [queue]);
  if (id === null) throw new Error(`no tick on ${queue} after force_tick`);
  return id;
}

/** Opens the next batch with plain pgq.next_batch; null when there is none. */
export async function nextBatchId(db: Queryable, queue: string, consumer: string): Promise<number | null> {
  return num(db, "select pgq.next_batch($1, $2)", [queue, consumer]);
}

export interface EventRow {
  ev_id: number;
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
export async function batchRows(db: Queryable, batchId: number): Promise<EventRow[]> {
  const { rows } = await db.query<Omit<EventRow, "ev_id" | "ev_txid"> & { ev_id: string; ev_txid: string }>(
    `select ev_id, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4
       from pgq.get_batch_events($1)`,
    [batchId],
  );
  return rows.map((r) => ({ ...r, ev_id: Number(r.ev_id), ev_txid: Number(r.ev_txid) }));
}

/** Opens the next batch, reads its events and finishes it; null when there was no batch. */
export async function drainBatch(db: Queryable, queue: string, consumer: string): Promise<EventRow[] | null> {
  const batchId = await nextBatchId(db, queue, consumer);
  if (batchId === null) return null;
  const rows = await batchRows(db, batchId);
  await db.query("select pgq.finish_batch($1)", [batchId]);
  return rows;
}

/**
 * Waits until no transaction that started before `txid` is still running
 * anywhere in the cluster (txids are cluster-wide, and other test files run
 * in parallel). Scenarios that assert which slot tables a batch reads, or
 * that the rotation guard lets a consumer pass, need their ticks to be taken
 * with nothing older than the queue's last switch still open. Waits while
 * the cluster's xmin moves: another file's long transaction may hold it a while.
 */
export async function waitForOlderTransactions(db: Queryable, txid: string | number): Promise<void> {
  await waitForProgress({
    what: `the transactions older than txid ${txid} to end`,
    measure: () => value<string>(db, "select pg_snapshot_xmin(pg_current_snapshot())::text"),
    done: (xmin) => BigInt(xmin) > BigInt(txid),
    intervalMs: 20,
  });
}

/** The queue's last switch txid (queue_switch_step2) as text. */
export async function switchStep2(db: Queryable, queue: string): Promise<string> {
  return value<string>(db, "select queue_switch_step2::text from pgq.queue where queue_name = $1", [queue]);
}
