/**
 * Whether a batch is applied or skipped, from the subscriber's recorded
 * position alone (the rule Skytools adopted in 2.1.8, without the earlier
 * "at most 5 ticks apart" guess): the batch's end tick recorded means it
 * was applied and only its finish_batch was lost; the start tick recorded
 * (or nothing yet) means apply it; anything else means the subscriber and
 * the queue disagree, and replay must stop loudly rather than skip or
 * repeat changes. Pure.
 */

export type BatchDecision = { action: "apply" } | { action: "skip" } | { action: "error"; message: string };

export function decideBatch(recordedTick: number | null, batch: { prevTickId: number; tickId: number }): BatchDecision {
  if (recordedTick === batch.tickId) return { action: "skip" };
  if (recordedTick === null || recordedTick === batch.prevTickId) return { action: "apply" };
  return {
    action: "error",
    message:
      `Lost position: the subscriber recorded tick ${recordedTick}, but the next batch runs from tick ` +
      `${batch.prevTickId} to ${batch.tickId}. Refusing to skip or repeat changes; ` +
      "if the subscriber was restored or the consumer re-registered, reset the position deliberately.",
  };
}
