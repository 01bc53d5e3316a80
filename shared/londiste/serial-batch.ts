/**
 * The serial batch protocol: how a consumer that applies a queue into the
 * subscriber takes one batch, exactly once (python-pgq's SerialConsumer,
 * with the position rule of position.ts). Replay and the copy's catch-up
 * run it; they differ only in the hooks: which events they take, how they
 * apply them, and the table-state steps around them.
 *
 * One round, in ONE subscriber transaction under the consumer's position
 * lock: open the next batch on the provider; decide from the recorded tick
 * whether it is applied already (skip), to apply, or a lost position
 * (stop loudly). A batch may span several ticks (the nextBatch hook
 * merges them when the consumer is behind); it is still one batch with one
 * end tick. To apply, its events stream through a cursor on a provider
 * connection of their own; the selected ones are decoded and handed to the
 * apply hook in chunks, one chunk applied on the subscriber while the next
 * is read and decoded, so memory stays flat (two chunks at most); then the
 * batch's end tick is recorded and the transaction commits. Only after
 * that commit is the batch finished on the provider (with the events the
 * hooks failed, in the same provider transaction).
 *
 * Why a crash anywhere is safe: before the subscriber commit nothing of
 * the batch is there and PgQ gives the same batch back; after it, the end
 * tick is recorded with the changes, so the batch comes back only to be
 * skipped and finished.
 */
import type pg from "pg";
import { withTransaction } from "../db/transaction.ts";
import { batchEvents, failEvent, finishBatch } from "../pgq/index.ts";
import type { BatchInfo, PgqEvent } from "../pgq/types.ts";
import { decodeChange, type RowChange } from "./change-event.ts";
import { decideBatch, lockConsumerPosition, recordTick, recordedTick } from "./position.ts";

/** What a round does with one event: apply it, pass over it, or mark it failed on the provider with a reason. */
export type EventVerdict = "apply" | "skip" | { fail: string };

/** The hooks of one batch being applied, made by SerialConsumer.begin in the batch's transaction. */
export interface BatchRound<R> {
  /** The event filter; runs for every event of the batch, in ev_id order. */
  select(ev: PgqEvent): EventVerdict;
  /** Applies a chunk of selected changes in the batch's transaction. */
  apply(changes: RowChange[]): Promise<void>;
  /**
   * A selected event that cannot be decoded, after the changes before it
   * were applied. Without this hook the decoding error fails the round.
   */
  undecodable?(ev: PgqEvent, error: unknown): Promise<void>;
  /** The state steps after the events, before the end tick is recorded. */
  end(): Promise<R>;
}

export interface SerialConsumer<I, R> {
  /** The consumer whose position is locked and recorded on the subscriber. */
  consumer: string;
  /**
   * Opens the consumer's next batch on the provider (an open one comes back
   * as it is); null when there is none. Called in the position transaction,
   * with the recorded tick, so a hook may bound a batch of several ticks by
   * what the subscriber says.
   */
  nextBatch(sub: pg.ClientBase, recorded: number | null): Promise<BatchInfo | null>;
  /** The way out named in a lost-position error, and the error to raise it as. */
  lostPosition?: { remedy: string; error: (message: string) => Error };
  /** No batch: the state steps that need none, in the position transaction (committed). */
  idle?(sub: pg.ClientBase, recorded: number | null): Promise<I>;
  /** True leaves a batch to apply open for a later round (nothing written). */
  hold?(sub: pg.ClientBase, recorded: number | null): Promise<boolean>;
  /** Starts applying a batch: the state steps before its events, and the round's hooks. */
  begin(sub: pg.ClientBase, batch: BatchInfo): Promise<BatchRound<R>>;
  /** Changes per apply call; bounds memory. */
  chunkSize?: number;
  /** After the subscriber commit, before the batch is finished on the provider: the narrowest crash window. */
  afterCommit?(batch: BatchInfo): Promise<void>;
  /**
   * Right before each subscriber commit (under the position lock): throws
   * to roll the round back, e.g. replay's fence when it lost its active lock.
   */
  beforeCommit?(sub: pg.ClientBase): Promise<void>;
}

/**
 * Where a round's time went (ms), for the log and the benchmark: opening
 * the batch under the position lock (lock, next_batch, recorded tick),
 * the hooks' state steps before and after the events (begin, end), reading
 * the events from the cursor, selecting and decoding them, waiting for
 * the apply of a chunk (apply; a chunk is applied while the next one is
 * read and decoded, so this is the apply time that reading did not hide),
 * recording the end tick, the subscriber commit, and finishing the batch
 * on the provider.
 */
export interface BatchPhases {
  open: number;
  begin: number;
  read: number;
  decode: number;
  apply: number;
  end: number;
  recordTick: number;
  commit: number;
  finish: number;
}

export type SerialBatchOutcome<I, R> =
  | { kind: "idle"; result: I | undefined }
  | { kind: "held"; batch: BatchInfo }
  | { kind: "skipped"; batch: BatchInfo; phases: BatchPhases }
  | { kind: "applied"; batch: BatchInfo; result: R; failedEvents: number; phases: BatchPhases };

const newPhases = (): BatchPhases => ({ open: 0, begin: 0, read: 0, decode: 0, apply: 0, end: 0, recordTick: 0, commit: 0, finish: 0 });

const DEFAULT_CHUNK = 1000;

export async function runSerialBatch<I, R>(
  provider: pg.Pool,
  subscriber: pg.Pool,
  consumer: SerialConsumer<I, R>,
): Promise<SerialBatchOutcome<I, R>> {
  const failed: Array<{ id: number; reason: string }> = [];
  let outcome: Extract<SerialBatchOutcome<I, R>, { kind: "skipped" | "applied" }>;
  const phases = newPhases();
  let mark = performance.now();
  /** Adds the time since the last mark to a phase. */
  const lap = (phase: keyof BatchPhases) => {
    const now = performance.now();
    phases[phase] += now - mark;
    mark = now;
  };

  const sub = await subscriber.connect();
  let pending: Promise<void> | undefined;
  let subBroken: Error | undefined;
  let reader: pg.PoolClient | undefined;
  let readerBroken: Error | undefined;
  try {
    await sub.query("begin");
    // Before the batch is opened: whoever resets the position waits for us, or we for them.
    await lockConsumerPosition(sub, consumer.consumer);
    const recorded = await recordedTick(sub, consumer.consumer);
    const batch = await consumer.nextBatch(sub, recorded);
    if (!batch) {
      const result = await consumer.idle?.(sub, recorded);
      await consumer.beforeCommit?.(sub);
      await sub.query("commit");
      return { kind: "idle", result };
    }
    if (await consumer.hold?.(sub, recorded)) {
      await sub.query("rollback");
      return { kind: "held", batch };
    }
    const decision = decideBatch(recorded, batch, consumer.lostPosition?.remedy);
    if (decision.action === "error") throw consumer.lostPosition ? consumer.lostPosition.error(decision.message) : new Error(decision.message);
    lap("open");
    if (decision.action === "skip") {
      // Applied already; only its finish was lost.
      await sub.query("rollback");
      outcome = { kind: "skipped", batch, phases };
    } else {
      const round = await consumer.begin(sub, batch);
      lap("begin");
      const chunkSize = consumer.chunkSize ?? DEFAULT_CHUNK;
      let chunk: RowChange[] = [];
      // One chunk is applied on the subscriber while the next is read and decoded from the provider.
      const settle = async () => {
        const applying = pending;
        if (!applying) return;
        pending = undefined;
        lap("decode");
        await applying;
        lap("apply");
      };
      const flush = async () => {
        if (chunk.length === 0) return;
        const changes = chunk;
        chunk = [];
        await settle();
        pending = round.apply(changes);
        // Its failure is raised by the next settle(); until then it must not count as unhandled.
        pending.catch(() => {});
      };
      reader = await provider.connect();
      await reader.query("begin read only");
      lap("read");
      for await (const ev of batchEvents(reader, batch.batchId)) {
        lap("read");
        const verdict = round.select(ev);
        if (verdict === "skip") {
          lap("decode");
          continue;
        }
        if (verdict !== "apply") {
          failed.push({ id: ev.id, reason: verdict.fail });
          lap("decode");
          continue;
        }
        let change: RowChange;
        try {
          change = decodeChange(ev);
        } catch (error) {
          if (!round.undecodable) throw error;
          await flush();
          await settle();
          await round.undecodable(ev, error);
          lap("apply");
          continue;
        }
        chunk.push(change);
        if (chunk.length >= chunkSize) await flush();
        lap("decode");
      }
      await reader.query("commit");
      lap("read");
      await flush();
      await settle();
      const result = await round.end();
      lap("end");
      await recordTick(sub, consumer.consumer, batch.tickId);
      lap("recordTick");
      await consumer.beforeCommit?.(sub);
      await sub.query("commit");
      lap("commit");
      outcome = { kind: "applied", batch, result, failedEvents: failed.length, phases };
    }
  } catch (error) {
    // An apply still running on the subscriber connection ends first (its outcome no longer matters).
    await pending?.catch(() => {});
    await sub.query("rollback").catch((e: unknown) => (subBroken = e as Error));
    await reader?.query("rollback").catch((e: unknown) => (readerBroken = e as Error));
    throw error;
  } finally {
    sub.release(subBroken);
    reader?.release(readerBroken);
  }

  const batch = outcome.batch;
  if (outcome.kind === "applied") await consumer.afterCommit?.(batch);
  // The subscriber has the batch (or had it already): close it on the provider.
  mark = performance.now();
  if (failed.length === 0) await finishBatch(provider, batch.batchId);
  else {
    await withTransaction(provider, async (client) => {
      for (const f of failed) await failEvent(client, batch.batchId, f.id, f.reason);
      await finishBatch(client, batch.batchId);
    });
  }
  lap("finish");
  return outcome;
}
