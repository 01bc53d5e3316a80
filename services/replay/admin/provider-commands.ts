/**
 * `londiste CONFIG provider ...`: the provider side of a job (docs/londiste.md,
 * "Commands").
 * Each table is added or removed in its own transaction; its capture
 * trigger is live from that commit. Removing tables sends a 'T' event so
 * subscribers drop them from their sets.
 */
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { installLondiste } from "../../../shared/londiste/install.ts";
import { canonicalName, providerSeqs, providerTables } from "../../../shared/londiste/catalog.ts";
import { createQueue, installPgq } from "../../../shared/pgq/index.ts";
import { readTableShape } from "../../../shared/londiste/table-shape.ts";
import { checkReplicable } from "../../../shared/londiste/replicable.ts";
import { type AdminContext, names, perName, requireNames, requireQueue } from "./context.ts";

export function providerCommands(ctx: AdminContext): Record<string, CommandSpec> {
  const db = ctx.provider;
  return {
    "provider.install": {
      description: "install PgQ and londiste on the provider and create the job's queue",
      request: {},
      handler: async () => {
        await installPgq(db);
        await installLondiste(db);
        const created = await createQueue(db, ctx.queue);
        ctx.wake();
        return { queue: ctx.queue, queue_created: created };
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
        const outcomes = await perName(requireNames(r.tables), async (table) => {
          await db.query("select londiste.provider_remove_table($1, $2)", [ctx.queue, table]);
          return { ok: true, message: "removed" };
        });
        if (outcomes.some((o) => o.ok)) await db.query("select londiste.provider_notify_change($1)", [ctx.queue]);
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
      description: "unregister sequences",
      request: { seqs: names },
      handler: async (r) => {
        await requireQueue(ctx);
        return perName(requireNames(r.seqs), async (seq) => {
          await db.query("select londiste.provider_remove_seq($1, $2)", [ctx.queue, seq]);
          return { ok: true, message: "removed" };
        });
      },
    },
  };
}
