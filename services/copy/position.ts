/**
 * The two pieces of replay's position handling the copy needs too, kept
 * here as local copies because services never import each other (they
 * belong in shared/londiste/; see the copy's report):
 *  - the per-consumer transaction lock on the subscriber, with exactly
 *    replay's key, so that taking it for replay's consumer waits for a
 *    batch replay is applying;
 *  - the batch rule of Skytools 2.1.8: end tick recorded → the batch was
 *    applied, skip it; start tick recorded (or nothing) → apply; anything
 *    else → stop.
 */
import type { Queryable } from "../../shared/db/queryable.ts";

export async function lockConsumerPosition(client: Queryable, consumer: string): Promise<void> {
  await client.query("select pg_advisory_xact_lock(hashtext('londiste.replay'), hashtext($1))", [consumer]);
}

export type BatchDecision = { action: "apply" } | { action: "skip" } | { action: "error"; message: string };

export function decideBatch(recordedTick: number | null, batch: { prevTickId: number; tickId: number }): BatchDecision {
  if (recordedTick === batch.tickId) return { action: "skip" };
  if (recordedTick === null || recordedTick === batch.prevTickId) return { action: "apply" };
  return {
    action: "error",
    message:
      `Lost position: the subscriber recorded tick ${recordedTick} for the copy, but its next batch runs from tick ` +
      `${batch.prevTickId} to ${batch.tickId}; resync the table`,
  };
}

/** The subscriber's recorded tick of a consumer (londiste.get_last_tick), null when none. */
export async function recordedTick(client: Queryable, consumer: string): Promise<number | null> {
  const { rows } = await client.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [consumer]);
  return rows[0]!.t === null ? null : Number(rows[0]!.t);
}
