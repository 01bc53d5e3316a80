/**
 * One replay round (spec §4.4 with the 2.1.8 position rule): open the next
 * batch on the provider; decide from the subscriber's recorded tick whether
 * it is applied already; stream its events, keep the row changes of tables
 * in state `ok`, apply them and record the batch's end tick in ONE
 * subscriber transaction; then, on the provider, mark events of unknown
 * type failed and finish the batch in one transaction.
 *
 * A crash anywhere is safe: before the subscriber commit the batch comes
 * back (sticky) and is applied; after it, its end tick is recorded and the
 * batch is skipped and finished. Memory stays flat: events are read
 * through a cursor and applied in chunks.
 */
import type pg from "pg";
import { decodeChange, type RowChange } from "../../shared/londiste/change-event.ts";
import { batchEvents, failEvent, finishBatch, nextBatch } from "../../shared/pgq/index.ts";
import type { BatchInfo } from "../../shared/pgq/types.ts";
import { decideBatch } from "./position.ts";

/** Applies decoded changes inside the caller's subscriber transaction. */
export type ApplyChanges = (client: pg.ClientBase, changes: RowChange[]) => Promise<void>;

export interface ReplaySettings {
  queue: string;
  consumer: string;
  ignoreTruncate: boolean;
  /** Changes applied per statement group; bounds memory. */
  chunkSize?: number;
  /**
   * Runs after the subscriber commit and before the batch is finished on
   * the provider: where a crash is hardest to get right, so tests put one
   * here (and a caller may log or count).
   */
  afterSubscriberCommit?: (batch: BatchInfo) => Promise<void>;
}

export type ReplayOutcome =
  | { kind: "idle" }
  | { kind: "skipped"; batch: BatchInfo }
  | { kind: "applied"; batch: BatchInfo; changes: number; failedEvents: number };

const CHANGE_TYPES = new Set(["I", "U", "D", "R"]);

export async function replayOneBatch(
  provider: pg.Pool,
  subscriber: pg.Pool,
  settings: ReplaySettings,
  apply: ApplyChanges,
): Promise<ReplayOutcome> {
  const batch = await nextBatch(provider, settings.queue, settings.consumer);
  if (!batch) return { kind: "idle" };

  const chunkSize = settings.chunkSize ?? 1000;
  const failed: Array<{ id: number; reason: string }> = [];
  let applied = 0;

  const sub = await subscriber.connect();
  const reader = await provider.connect();
  let subBroken: Error | undefined;
  let readerBroken: Error | undefined;
  try {
    await sub.query("begin");
    // Serialises replays of the same consumer on this subscriber, and reads the position under that lock.
    await sub.query("select pg_advisory_xact_lock(hashtext('londiste.replay'), hashtext($1))", [settings.consumer]);
    const recorded = (await sub.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [settings.consumer])).rows[0]!.t;
    const decision = decideBatch(recorded === null ? null : Number(recorded), batch);
    if (decision.action === "error") throw new Error(decision.message);
    if (decision.action === "skip") {
      await sub.query("rollback");
      await finishBatch(provider, batch.batchId);
      return { kind: "skipped", batch };
    }

    const { rows: tables } = await sub.query<{ table_name: string }>(
      "select table_name from londiste.subscriber_get_table_list($1) where merge_state = 'ok'",
      [settings.queue],
    );
    const ok = new Set(tables.map((t) => t.table_name));

    let chunk: RowChange[] = [];
    await reader.query("begin read only");
    for await (const ev of batchEvents(reader, batch.batchId)) {
      if (ev.type === null || !CHANGE_TYPES.has(ev.type)) {
        // Table-list notices and the like are not row changes; anything else unknown is set aside.
        if (ev.type !== "T") failed.push({ id: ev.id, reason: "Unknown operation" });
        continue;
      }
      if (!ev.extra1 || !ok.has(ev.extra1)) continue;
      if (ev.type === "R" && settings.ignoreTruncate) continue;
      chunk.push(decodeChange(ev));
      if (chunk.length >= chunkSize) {
        await apply(sub, chunk);
        applied += chunk.length;
        chunk = [];
      }
    }
    await reader.query("commit");
    if (chunk.length > 0) {
      await apply(sub, chunk);
      applied += chunk.length;
    }
    await sub.query("select londiste.set_last_tick($1, $2)", [settings.consumer, batch.tickId]);
    await sub.query("commit");
  } catch (error) {
    await sub.query("rollback").catch((e: unknown) => (subBroken = e as Error));
    await reader.query("rollback").catch((e: unknown) => (readerBroken = e as Error));
    throw error;
  } finally {
    sub.release(subBroken);
    reader.release(readerBroken);
  }

  await settings.afterSubscriberCommit?.(batch);
  // The subscriber has the batch; now close it on the provider.
  const client = await provider.connect();
  try {
    await client.query("begin");
    for (const f of failed) await failEvent(client, batch.batchId, f.id, f.reason);
    await finishBatch(client, batch.batchId);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
  return { kind: "applied", batch, changes: applied, failedEvents: failed.length };
}
