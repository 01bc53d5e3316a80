/**
 * `londiste CONFIG provider ...`: the provider side of a job (docs/londiste.md,
 * "Commands").
 * Each table is added or removed in its own transaction; its capture
 * trigger is live from that commit. Removing tables or sequences sends a
 * 'T' event so subscribers drop them from their sets at their next batch,
 * which that event makes come within the queue's ticker_max_lag.
 */
import type pg from "pg";
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { installProvider } from "../../../shared/londiste/setup.ts";
import { isLockNotAvailable } from "../../../shared/db/failure.ts";
import { withTransaction } from "../../../shared/db/transaction.ts";
import { sleep } from "../../../shared/sleep.ts";
import { canonicalName, providerSeqs, providerTables } from "../../../shared/londiste/catalog.ts";
import { readTableShape } from "../../../shared/londiste/table-shape.ts";
import { checkReplicable } from "../../../shared/londiste/replicable.ts";
import { type AdminContext, names, perName, requireNames, requireQueue } from "./context.ts";

/** How long `provider remove` waits for the table's lock before it drops the capture after telling the subscribers. */
const REMOVE_LOCK_TIMEOUT = "1s";
/** Pause between attempts to drop a busy table's capture, leaving its writers room. */
const REMOVE_RETRY_MS = 500;

/**
 * Removes a table's registration and its capture trigger in one
 * transaction (true). Dropping a trigger waits for every transaction that
 * reads the table, e.g. the copy of a big table, for as long as it runs:
 * when the lock does not come within REMOVE_LOCK_TIMEOUT, only the
 * registration goes now (false), so the table-list event can leave at
 * once, and the caller drops the capture afterwards.
 */
async function removeTable(db: pg.Pool, queue: string, table: string): Promise<boolean> {
  try {
    await withTransaction(db, async (client) => {
      await client.query(`set local lock_timeout = '${REMOVE_LOCK_TIMEOUT}'`);
      await client.query("select londiste.provider_remove_table($1, $2)", [queue, table]);
    });
    return true;
  } catch (error) {
    if (!isLockNotAvailable(error)) throw error;
  }
  // The name as provider_remove_table matches it; the trigger stays for now (its events go to tables no subscriber has).
  const { rowCount } = await db.query(
    `delete from londiste.provider_table
      where queue_name = $1
        and table_name = coalesce(londiste.quote_table(londiste.resolve_name($2, 'r')::regclass), $2)`,
    [queue, table],
  );
  if (rowCount !== 1) throw new Error(`no such table registered: ${table}`);
  return false;
}

/**
 * Drops a table's capture once its readers are done, in attempts of
 * REMOVE_LOCK_TIMEOUT: a trigger drop waiting for its lock would make every
 * writer of the table wait behind it for as long as the reader runs.
 */
async function dropCaptureWhenFree(db: pg.Pool, queue: string, table: string): Promise<void> {
  for (;;) {
    try {
      await withTransaction(db, async (client) => {
        await client.query(`set local lock_timeout = '${REMOVE_LOCK_TIMEOUT}'`);
        await client.query("select londiste.drop_capture($1, londiste.resolve_name($2, 'r')::regclass)", [queue, table]);
      });
      return;
    } catch (error) {
      if (!isLockNotAvailable(error)) throw error;
    }
    await sleep(REMOVE_RETRY_MS);
  }
}

export function providerCommands(ctx: AdminContext): Record<string, CommandSpec> {
  const db = ctx.provider;
  return {
    "provider.install": {
      description: "install PgQ and londiste on the provider and create the job's queue",
      request: {},
      handler: async () => {
        const result = await installProvider(ctx);
        ctx.wake();
        return result;
      },
    },
    "provider.add": {
      description: "capture changes of tables (each needs a primary key)",
      request: { tables: names },
      handler: async (r) => {
        await requireQueue(ctx);
        return perName(requireNames(r.tables), async (table) => {
          const name = await canonicalName(db, table);
          const refused = await checkReplicable(db, name);
          if (refused) return { ok: false, message: refused };
          const shape = await readTableShape(db, name);
          if (!shape || (shape.relkind !== "r" && shape.relkind !== "p")) return { ok: false, message: "no such table on the provider" };
          if (shape.primaryKey.length === 0) {
            return { ok: false, message: "the table has no primary key: londiste needs one to replay updates and deletes" };
          }
          await db.query("select londiste.provider_add_table($1, $2)", [ctx.queue, shape.name]);
          return { ok: true, message: "added" };
        });
      },
    },
    "provider.remove": {
      description: "stop capturing changes of tables (subscribers drop them from their sets)",
      request: { tables: names },
      handler: async (r) => {
        await requireQueue(ctx);
        const busy: string[] = [];
        const outcomes = await perName(requireNames(r.tables), async (table) => {
          if (await removeTable(db, ctx.queue, table)) return { ok: true, message: "removed" };
          busy.push(table);
          return { ok: true, message: "removed; its capture trigger was dropped once the table's readers were done" };
        });
        if (outcomes.some((o) => o.ok)) await db.query("select londiste.provider_notify_change($1)", [ctx.queue]);
        // The subscribers have their table list already; this waits for the table's long readers (a copy of it).
        for (const table of busy) await dropCaptureWhenFree(db, ctx.queue, table);
        return outcomes;
      },
    },
    "provider.tables": {
      description: "list the captured tables",
      request: {},
      handler: async () => {
        await requireQueue(ctx);
        return providerTables(db, ctx.queue);
      },
    },
    "provider.seqs": {
      description: "list the registered sequences",
      request: {},
      handler: async () => {
        await requireQueue(ctx);
        return providerSeqs(db, ctx.queue);
      },
    },
    "provider.add-seq": {
      description: "register sequences whose values subscribers follow",
      request: { seqs: names },
      handler: async (r) => {
        await requireQueue(ctx);
        return perName(requireNames(r.seqs), async (seq) => {
          const refused = await checkReplicable(db, await canonicalName(db, seq));
          if (refused) return { ok: false, message: refused };
          await db.query("select londiste.provider_add_seq($1, $2)", [ctx.queue, seq]);
          return { ok: true, message: "added" };
        });
      },
    },
    "provider.remove-seq": {
      description: "unregister sequences (subscribers stop following them)",
      request: { seqs: names },
      handler: async (r) => {
        await requireQueue(ctx);
        const outcomes = await perName(requireNames(r.seqs), async (seq) => {
          await db.query("select londiste.provider_remove_seq($1, $2)", [ctx.queue, seq]);
          return { ok: true, message: "removed" };
        });
        if (outcomes.some((o) => o.ok)) await db.query("select londiste.provider_notify_change($1)", [ctx.queue]);
        return outcomes;
      },
    },
  };
}
