/**
 * One replay round: the serial batch protocol (shared/londiste/serial-batch.ts:
 * position lock, recorded-tick decision, events through a cursor in
 * chunks, end tick recorded in the same subscriber transaction, then the
 * batch finished on the provider with the events of unknown type marked
 * failed) with replay's hooks: the machine's steps for replay at the
 * batch's start tick (or, idle, at its position), the row changes of the
 * tables replay applies (ok, do-sync), the table list of a 'T' event, and
 * the followed sequences. Behind by several ticks, one round takes them
 * as one batch (nextReplayBatch: bounded by events, never past a table's
 * handover tick or a held tick), still applied in one subscriber
 * transaction with its end tick.
 *
 * A change that cannot be applied (bad data, a missing column, a
 * duplicate key, a row that is not there with on_missing_row = error)
 * stops only its table: each chunk runs in a savepoint; when one fails it
 * is rolled back and replayed table-run by table-run to find the table,
 * which is put in state `error` with the message, in the same
 * transaction; the batch goes on without it. Any other failure (lost
 * connection, deadlock, shutdown, a missing privilege) fails the batch
 * instead, and replay retries it (shared/db/failure.ts says which is which).
 */
import type pg from "pg";
import { isDataError } from "../../shared/db/failure.ts";
import type { ApplyReport, ChangeOp } from "../../shared/londiste/apply.ts";
import { providerTables } from "../../shared/londiste/catalog.ts";
import { isChangeEvent, isTableListEvent, isTruncateEvent, type RowChange } from "../../shared/londiste/change-event.ts";
import { parseTextArray } from "../../shared/londiste/record-text.ts";
import { type BatchPhases, type BatchRound, runSerialBatch } from "../../shared/londiste/serial-batch.ts";
import { loadTableSyncs, type TableSync, writeTransition } from "../../shared/londiste/sync-store.ts";
import { TableShapeCache } from "../../shared/londiste/table-shape.ts";
import { replayApplies, type SyncEvent } from "../../shared/londiste/sync-machine.ts";
import { getConsumerInfo, nextBatch, nextMergedBatch, newestTick } from "../../shared/pgq/index.ts";
import type { BatchInfo } from "../../shared/pgq/types.ts";
import { pushSequences } from "./sequences.ts";

/**
 * Applies decoded changes inside the caller's subscriber transaction;
 * destTable maps provider to subscriber names; shapes caches the
 * subscriber tables' shapes for the batch's transaction (one catalog read
 * per table and batch, not per chunk). The report, when given, tells
 * onApplied the updates and deletes that found no row.
 */
export type ApplyChanges = (
  client: pg.ClientBase,
  changes: RowChange[],
  destTable: (table: string) => string,
  shapes?: TableShapeCache,
) => Promise<Pick<ApplyReport, "tables"> | void>;

/** Change events of one provider table and operation applied in a batch; `missed` of them found no row. */
export interface AppliedCount {
  table: string;
  op: ChangeOp;
  n: number;
  missed: number;
}

export interface ReplaySettings {
  queue: string;
  consumer: string;
  ignoreTruncate: boolean;
  /** Changes applied per statement group; bounds memory. */
  chunkSize?: number;
  /**
   * Behind by several ticks, one batch spans them, up to about this many
   * queue events (default MERGE_MAX_EVENTS; 0: one tick per batch).
   */
  mergeMaxEvents?: number;
  /**
   * Runs after the subscriber commit and before the batch is finished on
   * the provider: where a crash is hardest to get right, so tests put one
   * here (and a caller may log or count).
   */
  afterSubscriberCommit?: (batch: BatchInfo) => Promise<void>;
  /**
   * Told, per provider table and operation, the change events of a batch
   * that were applied, once the batch is committed on the subscriber (a
   * batch rolled back and retried is told once): the hook for counting.
   */
  onApplied?: (count: AppliedCount) => void;
  /** Told when a table is put into state error (already written, not yet committed). */
  onTableError?: (table: string, message: string) => void;
  /** Told about table-set and sequence events worth a log line. */
  onNotice?: (message: string, details: Record<string, unknown>) => void;
  /** Runs before every subscriber commit of a round, under the position lock; throwing rolls the round back (replay's fence). */
  fence?: (sub: pg.ClientBase) => Promise<void>;
}

export type ReplayOutcome =
  | { kind: "idle"; copyRequested: string[]; held?: boolean }
  | { kind: "skipped"; batch: BatchInfo; phases: BatchPhases }
  | {
      kind: "applied";
      batch: BatchInfo;
      changes: number;
      failedEvents: number;
      tableErrors: string[];
      copyRequested: string[];
      phases: BatchPhases;
    };

/**
 * Queue events a merged batch reaches for at most: big enough that the
 * per-batch work (opening, state steps, commit, finish) is small beside the
 * changes, small enough that one subscriber transaction stays short. Memory
 * does not grow with it (events stream through a cursor in chunks).
 */
export const MERGE_MAX_EVENTS = 50_000;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function replayOneBatch(
  provider: pg.Pool,
  subscriber: pg.Pool,
  settings: ReplaySettings,
  apply: ApplyChanges,
): Promise<ReplayOutcome> {
  // The counts of the round being applied; told only after its commit.
  let applied = new AppliedTally();
  const outcome = await runSerialBatch(provider, subscriber, {
    consumer: settings.consumer,
    chunkSize: settings.chunkSize,
    nextBatch: (sub, recorded) => nextReplayBatch(provider, sub, settings, recorded),
    // Idle: the state steps that need no batch still happen (an idle provider must not stall a handover).
    idle: async (sub, recorded) => {
      // Nothing recorded yet: replay's next batch starts where PgQ has its consumer.
      const position = recorded ?? (await getConsumerInfo(provider, settings.queue, settings.consumer))[0]?.lastTick ?? null;
      return (await replaySteps(sub, settings.queue, position)).copyRequested;
    },
    // A consistent read of both sides is going on at this tick: leave the batch (it stays open) for later.
    hold: (sub, recorded) => heldAt(sub, settings.consumer, recorded),
    begin: (sub, batch) => {
      applied = new AppliedTally();
      return replayRound(provider, sub, settings, apply, batch, applied);
    },
    beforeCommit: settings.fence,
    afterCommit: async (batch) => {
      if (settings.onApplied) for (const count of applied.counts()) settings.onApplied(count);
      await settings.afterSubscriberCommit?.(batch);
    },
  });
  switch (outcome.kind) {
    case "idle":
      return { kind: "idle", copyRequested: outcome.result ?? [] };
    case "held":
      return { kind: "idle", copyRequested: [], held: true };
    case "skipped":
      return { kind: "skipped", batch: outcome.batch, phases: outcome.phases };
    case "applied":
      return { kind: "applied", batch: outcome.batch, failedEvents: outcome.failedEvents, phases: outcome.phases, ...outcome.result };
  }
}

/**
 * Replay's next batch. Behind by several ticks (after an outage, or when
 * applying is slower than ticking), one batch spans them (nextMergedBatch,
 * at most about mergeMaxEvents events): a backlog then costs one
 * subscriber transaction per many ticks, not one per tick. The merged
 * batch still commits with its end tick in one transaction, so the crash
 * rules do not change. It never passes a tick replay must stand at: a
 * table's handover tick ahead of the position (wanna-sync:T, written by
 * the copy under the position lock this round holds) or a held tick
 * (londiste.replay_hold); while a hold is being claimed (tick -1, the
 * real tick not known yet) it takes one tick, as always. The newest tick
 * is read before the holds: a hold claimed after that read gets a tick
 * made after it, which this batch cannot reach.
 */
async function nextReplayBatch(provider: pg.Pool, sub: pg.ClientBase, settings: ReplaySettings, recorded: number | null): Promise<BatchInfo | null> {
  const maxEvents = settings.mergeMaxEvents ?? MERGE_MAX_EVENTS;
  const single = () => nextBatch(provider, settings.queue, settings.consumer);
  if (maxEvents <= 0) return single();
  let upTo = await newestTick(provider, settings.queue);
  // Not behind (at most one tick waiting, the steady state): nothing to merge, and no more round trips.
  if (upTo === null || (recorded !== null && upTo <= recorded + 1)) return single();
  const ahead = (tick: number) => recorded === null || tick > recorded;
  const { rows: holds } = await sub.query<{ tick: string }>(
    "select tick_id::text as tick from londiste.replay_hold where consumer_id = $1 and expires_at > now()",
    [settings.consumer],
  );
  for (const hold of holds) {
    const tick = Number(hold.tick);
    if (tick < 0) return single();
    if (ahead(tick)) upTo = Math.min(upTo, tick);
  }
  for (const t of await loadTableSyncs(sub, settings.queue)) {
    const tick = t.sync.state === "wanna-sync" ? t.sync.context.tick : null;
    if (tick !== null && ahead(tick)) upTo = Math.min(upTo, tick);
  }
  return nextMergedBatch(provider, settings.queue, settings.consumer, { maxEvents, upTo });
}

/**
 * Replay's hooks for one batch: the state steps at its start tick, the
 * event filter (tables replay applies; the table list; events of unknown
 * type failed on the provider), and the apply step that stops only the
 * table at fault.
 */
async function replayRound(
  provider: pg.Pool,
  sub: pg.ClientBase,
  settings: ReplaySettings,
  apply: ApplyChanges,
  batch: BatchInfo,
  tally: AppliedTally,
): Promise<BatchRound<{ changes: number; tableErrors: string[]; copyRequested: string[] }>> {
  const steps = await replaySteps(sub, settings.queue, batch.prevTickId);
  const tables = steps.tables;
  const dest = new Map([...tables.values()].filter((t) => replayApplies(t.sync.state)).map((t) => [t.table, t.dest]));
  const destOf = (table: string) => dest.get(table) ?? table;
  const tableErrors: string[] = [];
  let applied = 0;
  let tableList: string[] | undefined;
  const shapes = new TableShapeCache(sub);

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
      const report = await apply(sub, changes, destOf, shapes);
      await sub.query(`release savepoint ${name}`);
      tally.add(changes, report ?? undefined);
      return undefined;
    } catch (error) {
      // Anything but the data's fault fails the batch, which is retried (a privilege error waits for a GRANT).
      if (!isDataError(error)) throw error;
      await sub.query(`rollback to savepoint ${name}`);
      return error;
    }
  };

  return {
    select(ev) {
      if (isTableListEvent(ev.type)) {
        tableList = parseTextArray(ev.data ?? "{}");
        return "skip";
      }
      if (!isChangeEvent(ev.type)) return { fail: "Unknown operation" };
      if (!ev.extra1 || !dest.has(ev.extra1)) return "skip";
      if (isTruncateEvent(ev.type) && settings.ignoreTruncate) return "skip";
      return "apply";
    },
    async apply(chunk) {
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
    },
    // select() took only events with a table name.
    undecodable: (ev, error) => stopTable(ev.extra1!, error),
    async end() {
      if (tableList) await dropRemovedTables(sub, provider, settings, tables, tableList);
      await pushSequences(provider, sub, settings.queue, settings.onNotice);
      return { changes: applied, tableErrors, copyRequested: steps.copyRequested };
    },
  };
}

/** The change events applied in one round, per provider table and operation (those of rolled-back savepoints left out). */
class AppliedTally {
  private readonly byKey = new Map<string, AppliedCount>();

  add(changes: RowChange[], report: Pick<ApplyReport, "tables"> | undefined): void {
    for (const c of changes) this.entry(c.table, c.op).n++;
    for (const [table, stats] of report?.tables ?? []) {
      if (stats.missedUpdates > 0) this.entry(table, "update").missed += stats.missedUpdates;
      if (stats.missedDeletes > 0) this.entry(table, "delete").missed += stats.missedDeletes;
    }
  }

  counts(): AppliedCount[] {
    return [...this.byKey.values()];
  }

  private entry(table: string, op: ChangeOp): AppliedCount {
    const key = `${op} ${table}`;
    let count = this.byKey.get(key);
    if (!count) this.byKey.set(key, (count = { table, op, n: 0, missed: 0 }));
    return count;
  }
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
