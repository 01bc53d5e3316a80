/**
 * The copy's own PgQ consumer, one per table: `<replay consumer>_copy_<hash
 * of the table name>`, registered afresh (at the newest tick) before the
 * copy's snapshot is taken, so every change the snapshot does not contain
 * is in one of its batches; dropped when the table leaves the copy states.
 * A copy consumer left behind (a worker died after ok and before
 * unregistering) holds back rotation, so stale ones are dropped at start
 * and every minute.
 *
 * Dropping decides under the table's row lock: a worker that claims the
 * table must update that row first, so a registration made for a new copy
 * is never dropped on the strength of an older state.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { withTransaction } from "../../shared/db/transaction.ts";
import { recordTick } from "../../shared/londiste/position.ts";
import { isCopyState } from "../../shared/londiste/sync-machine.ts";
import { loadTableSync, loadTableSyncs } from "../../shared/londiste/sync-store.ts";
import { getConsumerInfo, registerConsumer, unregisterConsumer } from "../../shared/pgq/index.ts";
import type { CopyContext } from "./context.ts";

export function copyConsumerName(consumer: string, table: string): string {
  return `${consumer}_copy_${createHash("sha256").update(table).digest("hex").slice(0, 10)}`;
}

/** Where PgQ has the consumer (its last finished tick and open batch), null when not registered. */
export async function consumerPosition(provider: pg.Pool, queue: string, consumer: string) {
  const [info] = await getConsumerInfo(provider, queue, consumer);
  return info ? { lastTick: info.lastTick, currentBatch: info.currentBatch } : null;
}

/** Unregisters and registers again in one provider transaction; returns the tick it now starts at. */
export async function registerFresh(provider: pg.Pool, queue: string, consumer: string): Promise<number> {
  return withTransaction(provider, async (client) => {
    const { rows } = await client.query("select 1 from pgq.get_consumer_info($1, $2)", [queue, consumer]);
    if (rows.length > 0) await unregisterConsumer(client, queue, consumer);
    await registerConsumer(client, queue, consumer);
    const [info] = await getConsumerInfo(client, queue, consumer);
    return info!.lastTick;
  });
}

async function unregisterIfRegistered(provider: pg.Pool, queue: string, consumer: string): Promise<boolean> {
  if (!(await consumerPosition(provider, queue, consumer))) return false;
  try {
    await unregisterConsumer(provider, queue, consumer);
    return true;
  } catch (error) {
    if ((error as { kind?: string }).kind === "consumer_not_registered") return false;
    throw error;
  }
}

/**
 * Drops the table's copy consumer (and its recorded tick) unless the table
 * is in a copy state; true when it was registered and is gone now.
 */
export async function dropCopyConsumer(ctx: CopyContext, table: string): Promise<boolean> {
  const { queue, consumer } = ctx.config;
  const name = copyConsumerName(consumer, table);
  return withTransaction(ctx.subscriber, async (client) => {
    await client.query("select 1 from londiste.subscriber_table where queue_name = $1 and table_name = $2 for update", [queue, table]);
    const t = await loadTableSync(client, queue, table);
    if (t && isCopyState(t.sync.state)) return false;
    await recordTick(client, name, null);
    return unregisterIfRegistered(ctx.provider, queue, name);
  });
}

/** Unregisters copy consumers of this job whose table is not in a copy state; returns their names. */
export async function dropStaleCopyConsumers(ctx: CopyContext): Promise<string[]> {
  const { queue, consumer } = ctx.config;
  const prefix = `${consumer}_copy_`;
  const names = (await getConsumerInfo(ctx.provider, queue)).map((c) => c.consumerName).filter((n) => n.startsWith(prefix));
  if (names.length === 0) return [];
  const tableOf = new Map((await loadTableSyncs(ctx.subscriber, queue)).map((t) => [copyConsumerName(consumer, t.table), t]));
  const dropped: string[] = [];
  for (const name of names) {
    const t = tableOf.get(name);
    if (t && isCopyState(t.sync.state)) continue;
    const gone = t
      ? await dropCopyConsumer(ctx, t.table)
      : await withTransaction(ctx.subscriber, async (client) => {
          await recordTick(client, name, null);
          return unregisterIfRegistered(ctx.provider, queue, name);
        });
    if (gone) dropped.push(name);
  }
  return dropped;
}
