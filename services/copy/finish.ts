/**
 * The ends of a table's copy:
 *  - do-sync:T (replay has taken the table over at T; the copy, which
 *    stopped moving at wanna-sync:T, stands at T): ok, the copy consumer's
 *    recorded tick cleared and the parked foreign keys whose two tables
 *    are now both ok restored, in one subscriber transaction; then the
 *    copy consumer is unregistered.
 *  - a data error: the table goes to state error with the message, and
 *    the copy consumer goes away.
 */
import { withTransaction } from "../../shared/db/transaction.ts";
import { isCopyState } from "../../shared/londiste/sync-machine.ts";
import { writeTransition } from "../../shared/londiste/sync-store.ts";
import type { CopyContext } from "./context.ts";
import { consumerPosition, copyConsumerName, dropCopyConsumer } from "./copy-consumer.ts";
import { restorePendingForeignKeys } from "./dest-objects.ts";
import { StepAbandoned, TableFailure } from "./errors.ts";
import { requireLease, requireLeaseIn } from "./lease.ts";
import { recordedTick, recordTick } from "../../shared/londiste/position.ts";

export async function finishTable(ctx: CopyContext, tableName: string): Promise<void> {
  const { queue, consumer } = ctx.config;
  const copyConsumer = copyConsumerName(consumer, tableName);
  const fkeys = await withTransaction(ctx.subscriber, async (client) => {
    const current = await requireLeaseIn(client, queue, tableName, ctx.me, "do-sync");
    const tick = current.sync.context.tick;
    const copyTick = (await recordedTick(client, copyConsumer)) ?? (await consumerPosition(ctx.provider, queue, copyConsumer))?.lastTick ?? null;
    if (copyTick === null || copyTick !== tick) {
      throw new TableFailure(`Invalid table state: do-sync:${tick}, but the copy stands at tick ${copyTick}`);
    }
    const result = await writeTransition(client, current, { type: "COPY.FINISHED", copyTick }, "copy");
    if (!result.accepted) throw new StepAbandoned(result.reason);
    await recordTick(client, copyConsumer, null);
    return restorePendingForeignKeys(client);
  });
  const log = ctx.log.child({ table: tableName });
  log.info("handed over: ok");
  for (const fk of fkeys.restored) log.info({ fkey: fk.name, from: fk.from, to: fk.to }, "foreign key restored");
  for (const fk of fkeys.failed) log.warn({ fkey: fk.name, from: fk.from, to: fk.to, error: fk.error }, "foreign key could not be restored; still pending");
  await dropCopyConsumer(ctx, tableName);
}

/** Puts the table into state error (if it is still ours and in a copy state); true when written. */
export async function failTable(ctx: CopyContext, tableName: string, message: string): Promise<boolean> {
  const { queue } = ctx.config;
  const written = await withTransaction(ctx.subscriber, async (client) => {
    const current = await requireLease(client, queue, tableName, ctx.me);
    if (!isCopyState(current.sync.state)) return false;
    return (await writeTransition(client, current, { type: "FAIL", message: message.slice(0, 2000) }, "copy")).accepted;
  });
  if (written) ctx.log.error({ table: tableName, error: message }, "table stopped: state error");
  await dropCopyConsumer(ctx, tableName);
  return written;
}
