/**
 * State catching-up: the copy consumer walks the queue from where it was
 * registered and applies this table's row changes that the copy's
 * snapshot does not contain. Each batch (spanning all the ticks waiting,
 * up to a size limit) goes through the serial batch protocol
 * (shared/londiste/serial-batch.ts), the one replay runs: its changes and
 * the copy consumer's end tick commit together, so a crash anywhere
 * neither loses nor repeats a change. When no batch is left it offers the
 * handover (COPY.CAUGHT_UP) under replay's position lock, so replay is
 * not in the middle of a batch; the machine accepts it when the copy has
 * passed the fence tick and replay is not ahead: wanna-sync:<copy tick>.
 */
import type pg from "pg";
import { sqlState } from "../../shared/db/failure.ts";
import { withTransaction } from "../../shared/db/transaction.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { isChangeEvent, isTruncateEvent } from "../../shared/londiste/change-event.ts";
import { lockConsumerPosition, recordedTick } from "../../shared/londiste/position.ts";
import { type BatchRound, runSerialBatch } from "../../shared/londiste/serial-batch.ts";
import { type TableSync, writeTransition } from "../../shared/londiste/sync-store.ts";
import { TableShapeCache } from "../../shared/londiste/table-shape.ts";
import { type BatchInfo, nextMergedBatch, PgqError } from "../../shared/pgq/index.ts";
import type { CopyContext } from "./context.ts";
import { consumerPosition, copyConsumerName } from "./copy-consumer.ts";
import { StepAbandoned, TableFailure } from "./errors.ts";
import { requireLeaseIn } from "./lease.ts";
import { parseSnapshot, type TxidSnapshot, visibleIn } from "./snapshot.ts";

export type CatchUpStep =
  | { kind: "applied"; tick: number; changes: number; skippedVisible: number }
  | { kind: "skipped"; tick: number }
  | { kind: "handed-over"; tick: number }
  /** Replay stands at a later tick than the copy: another batch is there, no need to wait for a tick. */
  | { kind: "behind"; tick: number; replayTick: number }
  | { kind: "wait"; reason: string };

const CHUNK = 1000;
/** Queue events a merged catch-up batch reaches for at most. */
const MERGE_MAX_EVENTS = 20_000;
/** How long the handover waits for replay to finish its batch before trying again later. */
const REPLAY_LOCK_TIMEOUT = "2s";

function notRegistered(error: unknown, consumer: string): never {
  if (error instanceof PgqError && error.kind === "consumer_not_registered") {
    throw new TableFailure(`the copy consumer ${consumer} is no longer registered on the provider: changes may be missing, resync the table`);
  }
  throw error;
}

/**
 * The copy consumer's next batch, spanning every tick up to the newest one
 * (at most about MERGE_MAX_EVENTS events of the queue): after a long copy
 * the backlog is many ticks, and one subscriber transaction per tick would
 * cost more than the changes themselves.
 */
function nextCatchUpBatch(db: CopyContext["provider"], queue: string, consumer: string): Promise<BatchInfo | null> {
  return nextMergedBatch(db, queue, consumer, { maxEvents: MERGE_MAX_EVENTS });
}

/** One batch of the copy consumer, or the handover when there is none. */
export async function catchUpOnce(ctx: CopyContext, table: TableSync, signal: AbortSignal): Promise<CatchUpStep> {
  const { queue, consumer } = ctx.config;
  const copyConsumer = copyConsumerName(consumer, table.table);
  const snapshotText = table.sync.context.snapshot;
  if (!snapshotText) throw new TableFailure(`${table.table}: catching-up without the copy's snapshot; resync the table`);
  const snapshot = parseSnapshot(snapshotText);

  const outcome = await runSerialBatch(ctx.provider, ctx.subscriber, {
    consumer: copyConsumer,
    chunkSize: CHUNK,
    nextBatch: () => nextCatchUpBatch(ctx.provider, queue, copyConsumer).catch((e: unknown) => notRegistered(e, copyConsumer)),
    lostPosition: { remedy: "the copy cannot go on from here: resync the table", error: (message) => new TableFailure(message) },
    begin: async (sub) => catchUpRound(ctx, sub, table, snapshot, signal),
  });
  switch (outcome.kind) {
    case "idle":
    case "held":
      return offerHandover(ctx, table, copyConsumer);
    case "skipped":
      return { kind: "skipped", tick: outcome.batch.tickId };
    case "applied":
      return { kind: "applied", tick: outcome.batch.tickId, ...outcome.result };
  }
}

/**
 * The copy's hooks for one batch: only this table's row changes, less
 * those visible in the copy's snapshot (in the copied rows already),
 * applied as they are; the lease is checked before the commit.
 */
function catchUpRound(
  ctx: CopyContext,
  sub: pg.ClientBase,
  table: TableSync,
  snapshot: TxidSnapshot,
  signal: AbortSignal,
): BatchRound<{ changes: number; skippedVisible: number }> {
  let changes = 0;
  let skippedVisible = 0;
  // The table's shape read once per batch transaction, not per chunk.
  const shapes = new TableShapeCache(sub);
  return {
    select(ev) {
      if (signal.aborted) throw new StepAbandoned("stopping");
      if (ev.extra1 !== table.table || !isChangeEvent(ev.type)) return "skip";
      if (isTruncateEvent(ev.type) && ctx.config.ignoreTruncate) return "skip";
      if (visibleIn(ev.txid, snapshot)) {
        skippedVisible++;
        return "skip";
      }
      return "apply";
    },
    async apply(chunk) {
      const report = await applyChanges(sub, chunk, {
        destTable: () => table.dest,
        shapes,
        onMissingRow: ctx.config.onMissingRow,
        log: (msg, details) => ctx.log.warn({ table: table.table, ...details }, msg),
      });
      if (report.missedTotal > 0) ctx.log.warn({ table: table.table, missed: report.missedTotal }, "updates/deletes that found no row");
      changes += chunk.length;
    },
    async end() {
      await requireLeaseIn(sub, ctx.config.queue, table.table, ctx.me, "catching-up");
      return { changes, skippedVisible };
    },
  };
}

/**
 * The copy has no next batch: COPY.CAUGHT_UP with its tick and replay's,
 * read under replay's position lock. Replay's position is its recorded
 * tick, or where PgQ has its consumer when nothing is recorded yet.
 */
async function offerHandover(ctx: CopyContext, table: TableSync, copyConsumer: string): Promise<CatchUpStep> {
  const { queue, consumer } = ctx.config;
  try {
    return await withTransaction(ctx.subscriber, async (client) => {
      await client.query(`set local lock_timeout = '${REPLAY_LOCK_TIMEOUT}'`);
      await lockConsumerPosition(client, consumer);
      const position = await consumerPosition(ctx.provider, queue, copyConsumer);
      if (!position) notRegistered(new PgqError("consumer_not_registered", "not registered"), copyConsumer);
      if (position.currentBatch !== null) return { kind: "wait", reason: "the copy consumer has a batch open" } as const;
      const copyRecorded = await recordedTick(client, copyConsumer);
      if (copyRecorded !== null && copyRecorded !== position.lastTick) {
        throw new TableFailure(
          `Lost position: the subscriber recorded tick ${copyRecorded} for the copy, PgQ has it at tick ${position.lastTick}; resync the table`,
        );
      }
      const replayTick = (await recordedTick(client, consumer)) ?? (await consumerPosition(ctx.provider, queue, consumer))?.lastTick ?? null;
      if (replayTick === null) return { kind: "wait", reason: "replay's consumer is not registered yet" } as const;
      const current = await requireLeaseIn(client, queue, table.table, ctx.me, "catching-up");
      const copyTick = position.lastTick;
      // Replay is ahead: its tick is there for the copy too, so go on at once rather than wait for the next one.
      if (replayTick > copyTick) return { kind: "behind", tick: copyTick, replayTick } as const;
      const result = await writeTransition(client, current, { type: "COPY.CAUGHT_UP", copyTick, replayTick }, "copy");
      if (!result.accepted) return { kind: "wait", reason: `replay at tick ${replayTick}, copy at ${copyTick}: ${result.reason}` } as const;
      return { kind: "handed-over", tick: copyTick } as const;
    });
  } catch (error) {
    if (sqlState(error) === "55P03") return { kind: "wait", reason: "replay is applying a batch" };
    throw error;
  }
}
