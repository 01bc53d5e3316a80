/**
 * One replay round (spec §4.4 with the 2.1.8 position rule): under the
 * consumer's lock on the subscriber, open the next batch on the provider;
 * decide from the subscriber's recorded tick whether it is applied
 * already; stream its events, apply the row changes of tables in state
 * `ok`, push the followed sequences, and record the batch's end tick, in
 * ONE subscriber transaction; then, on the provider, mark events of
 * unknown type failed and finish the batch in one transaction.
 *
 * A crash anywhere is safe: before the subscriber commit the batch comes
 * back (sticky) and is applied; after it, its end tick is recorded and the
 * batch is skipped and finished. Memory stays flat: events are read
 * through a cursor and applied in chunks.
 *
 * A change that cannot be applied (bad data, a missing column, a
 * duplicate key, a row that is not there with on_missing_row = error)
 * stops only its table: each chunk runs in a savepoint; when one fails it
 * is rolled back and replayed table-run by table-run to find the table,
 * which is put in state `error` with the message, in the same
 * transaction; the batch goes on without it. Failures of the connection
 * or the server (lost connection, deadlock, shutdown) fail the batch
 * instead, and replay retries it.
 */
import type pg from "pg";
import { providerTables } from "../../shared/londiste/catalog.ts";
import { decodeChange, type RowChange } from "../../shared/londiste/change-event.ts";
import { isTransientError } from "../../shared/londiste/error-kind.ts";
import { parseTextArray } from "../../shared/londiste/record-text.ts";
import { loadTableSyncs, type TableSync, writeTransition } from "../../shared/londiste/sync-store.ts";
import type { SyncEvent } from "../../shared/londiste/sync-machine.ts";
import { batchEvents, failEvent, finishBatch, getConsumerInfo, nextBatch } from "../../shared/pgq/index.ts";
import type { BatchInfo } from "../../shared/pgq/types.ts";
import { decideBatch, lockConsumerPosition, recordedTick } from "../../shared/londiste/position.ts";
import { pushSequences } from "./sequences.ts";

/** Applies decoded changes inside the caller's subscriber transaction; destTable maps provider to subscriber names. */
export type ApplyChanges = (client: pg.ClientBase, changes: RowChange[], destTable: (table: string) => string) => Promise<void>;

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
  /** Told when a table is put into state error (already written, not yet committed). */
  onTableError?: (table: string, message: string) => void;
  /** Told about table-set and sequence events worth a log line. */
  onNotice?: (message: string, details: Record<string, unknown>) => void;
}

export type ReplayOutcome =
  | { kind: "idle"; copyRequested: string[]; held?: boolean }
  | { kind: "skipped"; batch: BatchInfo }
  | { kind: "applied"; batch: BatchInfo; changes: number; failedEvents: number; tableErrors: string[]; copyRequested: string[] };

const CHANGE_TYPES = new Set(["I", "U", "D", "R"]);

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function replayOneBatch(
  provider: pg.Pool,
  subscriber: pg.Pool,
  settings: ReplaySettings,
  apply: ApplyChanges,
): Promise<ReplayOutcome> {
  const chunkSize = settings.chunkSize ?? 1000;
  const failed: Array<{ id: number; reason: string }> = [];
  let applied = 0;
  let outcome: Extract<ReplayOutcome, { kind: "applied" }>;

  const sub = await subscriber.connect();
  let subBroken: Error | undefined;
  let reader: pg.PoolClient | undefined;
  let readerBroken: Error | undefined;
  try {
    await sub.query("begin");
    // Taken before the batch is opened: an admin command that resets the position waits for us, or we for it.
    await lockConsumerPosition(sub, settings.consumer);
    const batch = await nextBatch(provider, settings.queue, settings.consumer);
    const recorded = await recordedTick(sub, settings.consumer);
    if (!batch) {
      // Idle: the state steps that need no batch still happen (an idle provider must not stall a handover).
      // Nothing recorded yet: replay's next batch starts where PgQ has its consumer.
      const position = recorded ?? (await getConsumerInfo(provider, settings.queue, settings.consumer))[0]?.lastTick ?? null;
      const steps = await replaySteps(sub, settings.queue, position);
      await sub.query("commit");
      return { kind: "idle", copyRequested: steps.copyRequested };
    }
    if (await heldAt(sub, settings.consumer, recorded)) {
      // A consistent read of both sides is going on at this tick: leave the batch (it stays open) for later.
      await sub.query("rollback");
      return { kind: "idle", copyRequested: [], held: true };
    }
    const decision = decideBatch(recorded, batch);
    if (decision.action === "error") throw new Error(decision.message);
    if (decision.action === "skip") {
      await sub.query("rollback");
      await finishBatch(provider, batch.batchId);
      return { kind: "skipped", batch };
    }

    const steps = await replaySteps(sub, settings.queue, batch.prevTickId);
    const tables = steps.tables;
    const dest = new Map([...tables.values()].filter((t) => REPLAY_APPLIES.has(t.sync.state)).map((t) => [t.table, t.dest]));
    const destOf = (table: string) => dest.get(table) ?? table;
    const tableErrors: string[] = [];
    const stopTable = async (table: string, error: unknown) => {
      const message = messageOf(error);
      dest.delete(table);
      tableErrors.push(table);
      const current = tables.get(table);
      if (current) await step(sub, tables, current, { type: "FAIL", message: message.slice(0, 2000) });
      settings.onTableError?.(table, message);
    };
    let savepoints = 0;
    const attempt = async (changes: RowChange[]): Promise<unknown> => {
      const name = `londiste_sp${++savepoints}`;
      await sub.query(`savepoint ${name}`);
      try {
        await apply(sub, changes, destOf);
        await sub.query(`release savepoint ${name}`);
        return undefined;
      } catch (error) {
        if (isTransientError(error)) throw error;
        await sub.query(`rollback to savepoint ${name}`);
        return error;
      }
    };
    const flush = async (chunk: RowChange[]) => {
      const live = chunk.filter((c) => dest.has(c.table));
      if (live.length === 0) return;
      if ((await attempt(live)) === undefined) {
        applied += live.length;
        return;
      }
      // Find the table at fault: the same changes again, one run of one table at a time.
      let start = 0;
      while (start < live.length) {
        let end = start + 1;
        while (end < live.length && live[end]!.table === live[start]!.table) end++;
        const table = live[start]!.table;
        if (dest.has(table)) {
          const error = await attempt(live.slice(start, end));
          if (error === undefined) applied += end - start;
          else await stopTable(table, error);
        }
        start = end;
      }
    };

    let tableList: string[] | undefined;
    let chunk: RowChange[] = [];
    reader = await provider.connect();
    await reader.query("begin read only");
    for await (const ev of batchEvents(reader, batch.batchId)) {
      if (ev.type === "T") {
        tableList = parseTextArray(ev.data ?? "{}");
        continue;
      }
      if (ev.type === null || !CHANGE_TYPES.has(ev.type)) {
        failed.push({ id: ev.id, reason: "Unknown operation" });
        continue;
      }
      if (!ev.extra1 || !dest.has(ev.extra1)) continue;
      if (ev.type === "R" && settings.ignoreTruncate) continue;
      let change: RowChange;
      try {
        change = decodeChange(ev);
      } catch (error) {
        await flush(chunk);
        chunk = [];
        await stopTable(ev.extra1, error);
        continue;
      }
      chunk.push(change);
      if (chunk.length >= chunkSize) {
        await flush(chunk);
        chunk = [];
      }
    }
    await reader.query("commit");
    await flush(chunk);

    if (tableList) await dropRemovedTables(sub, provider, settings, tables, tableList);
    await pushSequences(provider, sub, settings.queue, settings.onNotice);
    await sub.query("select londiste.set_last_tick($1, $2)", [settings.consumer, batch.tickId]);
    await sub.query("commit");
    outcome = { kind: "applied", batch, changes: applied, failedEvents: failed.length, tableErrors, copyRequested: steps.copyRequested };
  } catch (error) {
    await sub.query("rollback").catch((e: unknown) => (subBroken = e as Error));
    await reader?.query("rollback").catch((e: unknown) => (readerBroken = e as Error));
    throw error;
  } finally {
    sub.release(subBroken);
    reader?.release(readerBroken);
  }

  const batch = outcome.batch;
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
  return outcome;
}

/** Whether a live hold (londiste.replay_hold) stops replay at the tick it stands at. */
async function heldAt(sub: pg.ClientBase, consumer: string, recorded: number | null): Promise<boolean> {
  if (recorded === null) return false;
  const { rows } = await sub.query(
    "select 1 from londiste.replay_hold where consumer_id = $1 and tick_id = $2 and expires_at > now()",
    [consumer, recorded],
  );
  return rows.length > 0;
}

/** States whose row changes replay applies: ok, and do-sync (replay took the table over at its tick). */
const REPLAY_APPLIES = new Set(["ok", "do-sync"]);

/** Writes one transition in the batch's transaction and keeps the in-memory row in step. */
async function step(sub: pg.ClientBase, tables: Map<string, TableSync>, current: TableSync, event: SyncEvent): Promise<boolean> {
  const result = await writeTransition(sub, current, event, "replay");
  if (result.accepted) tables.set(current.table, result.table);
  return result.accepted;
}

/**
 * Replay's moves in the table-sync machine, at a position (the batch's
 * start tick, or the recorded tick when idle), under the position lock:
 * (none) → in-copy (a copy worker is then asked for), and
 * wanna-sync:T → do-sync:T when replay stands at T (from here on replay
 * applies the table). A conflict (SyncConflict) fails the round, which
 * is retried.
 */
async function replaySteps(sub: pg.ClientBase, queue: string, position: number | null) {
  const tables = new Map((await loadTableSyncs(sub, queue)).map((t) => [t.table, t]));
  const copyRequested: string[] = [];
  for (const t of [...tables.values()]) {
    if (t.sync.state === "none") {
      if (await step(sub, tables, t, { type: "COPY.REQUESTED" })) copyRequested.push(t.table);
    } else if (t.sync.state === "wanna-sync" && position !== null && t.sync.context.tick === position) {
      await step(sub, tables, t, { type: "REPLAY.REACHED", replayTick: position });
    }
  }
  return { tables, copyRequested };
}

/**
 * A 'T' event lists the tables the provider captured when it was sent.
 * Dropped from the subscriber's set (rows kept): tables in neither that
 * list nor the provider's current one, so an old event cannot remove a
 * table added after it was sent.
 */
async function dropRemovedTables(
  sub: pg.ClientBase,
  provider: pg.Pool,
  settings: ReplaySettings,
  tables: Map<string, TableSync>,
  listed: string[],
): Promise<void> {
  const keep = new Set([...listed, ...(await providerTables(provider, settings.queue))]);
  for (const t of [...tables.values()]) {
    if (keep.has(t.table)) continue;
    await step(sub, tables, t, { type: "REMOVE" });
    tables.delete(t.table);
    settings.onNotice?.("table no longer captured on the provider: removed from the subscriber's set (rows kept)", { table: t.table });
  }
}
