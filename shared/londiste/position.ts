/**
 * A consumer's position on the subscriber, shared by replay and the copy:
 *  - the per-consumer transaction lock: held while a batch is applied and
 *    its tick recorded, and by anyone who must not see that half done
 *    (admin commands; the copy, taking replay's lock, waits for a batch
 *    replay is applying);
 *  - the recorded tick (londiste.get_last_tick / set_last_tick): written
 *    only here, in the transaction that applied the batch, or cleared to
 *    forget a position;
 *  - the batch rule of Skytools 2.1.8, without the earlier "at most 5
 *    ticks apart" guess: the batch's end tick recorded means it was
 *    applied and only its finish_batch was lost (skip); its start tick
 *    recorded, or nothing yet, means apply it; anything else means the
 *    subscriber and the queue disagree, and the consumer stops loudly
 *    rather than skip or repeat changes.
 */
import { ADVISORY_LOCKS } from "../db/advisory-locks.ts";
import type { Queryable } from "../db/queryable.ts";

export async function lockConsumerPosition(client: Queryable, consumer: string): Promise<void> {
  await client.query("select pg_advisory_xact_lock($1, hashtext($2))", [ADVISORY_LOCKS.replayPosition.classId, consumer]);
}

/** The recorded end tick of the consumer's last applied batch, null when none. */
export async function recordedTick(client: Queryable, consumer: string): Promise<number | null> {
  const { rows } = await client.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [consumer]);
  return rows[0]!.t === null ? null : Number(rows[0]!.t);
}

/**
 * Records the end tick of the batch just applied, in the transaction that
 * applied it (python-pgq's set_batch_done); null forgets the position.
 */
export async function recordTick(client: Queryable, consumer: string, tick: number | null): Promise<void> {
  await client.query("select londiste.set_last_tick($1, $2)", [consumer, tick]);
}

export type BatchDecision = { action: "apply" } | { action: "skip" } | { action: "error"; message: string };

const REPLAY_REMEDY = "if the subscriber was restored or the consumer re-registered, reset the position deliberately (replay --reset)";

/** Whether the batch is applied already, to apply, or a lost position (python-pgq's is_batch_done, made strict). */
export function decideBatch(
  recorded: number | null,
  batch: { prevTickId: number; tickId: number },
  remedy: string = REPLAY_REMEDY,
): BatchDecision {
  if (recorded === batch.tickId) return { action: "skip" };
  if (recorded === null || recorded === batch.prevTickId) return { action: "apply" };
  return {
    action: "error",
    message:
      `Lost position: the subscriber recorded tick ${recorded}, but the next batch runs from tick ` +
      `${batch.prevTickId} to ${batch.tickId}. Refusing to skip or repeat changes; ${remedy}.`,
  };
}
