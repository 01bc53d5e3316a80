/**
 * `londiste CONFIG subscriber ...`: the subscriber side of a job
 * (docs/londiste.md, "Commands"). A table joins the set only if the provider captures it and the
 * two tables fit (table-check.ts; --force overrides); it starts at state
 * (none), or at ok with --expect-sync. Writes that must not interleave
 * with a batch being applied take replay's per-consumer lock.
 */
import type pg from "pg";
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { CommandError } from "../../../shared/bus/replies.ts";
import { quoteIdent } from "../../../shared/db/sql-text.ts";
import { withTransaction } from "../../../shared/db/transaction.ts";
import {
  canonicalName,
  foreignKeysTouching,
  providerSeqs,
  providerTables,
  subscriberSeqs,
  subscriberTables,
  tableTriggers,
} from "../../../shared/londiste/catalog.ts";
import { installSubscriber, registerSubscriber, unregisterSubscriber } from "../../../shared/londiste/setup.ts";
import { checkReplicable } from "../../../shared/londiste/replicable.ts";
import { checkTablePair } from "../../../shared/londiste/table-check.ts";
import { readTableShape } from "../../../shared/londiste/table-shape.ts";
import { loadTableSync, recordTableAdded, writeTransition } from "../../../shared/londiste/sync-store.ts";
import { stateLabel, type SyncEvent } from "../../../shared/londiste/sync-machine.ts";
import { registerConsumer } from "../../../shared/pgq/index.ts";
import { lockConsumerPosition } from "../../../shared/londiste/position.ts";
import { UNREGISTER_TABLES_EFFECT, unregisteredSince } from "../../../shared/londiste/subscriber-registration.ts";
import { checkExpectSync, FORCE_HINT, relationKind, withHint } from "./add-checks.ts";
import { uninstallCommand } from "./uninstall-command.ts";
import { type AdminContext, names, type NameOutcome, perName, requireLondiste, requireNames, requireQueue } from "./context.ts";

const TRIGGER_MODES: Record<string, string> = {
  always: "enable always trigger",
  replica: "enable replica trigger",
  origin: "enable trigger",
  disable: "disable trigger",
};
const MODE_OF_TGENABLED: Record<string, string> = { A: "always", R: "replica", O: "origin", D: "disable" };

export function subscriberCommands(ctx: AdminContext): Record<string, CommandSpec> {
  const sub = ctx.subscriber;
  const ready = async () => {
    await requireLondiste(sub, "subscriber");
    await requireQueue(ctx);
  };

  async function checkOne(table: string, dest: string) {
    const [p, s, triggers] = await Promise.all([readTableShape(ctx.provider, table), readTableShape(sub, dest), tableTriggers(sub, dest)]);
    return { ...checkTablePair(table, p, s, triggers, dest), provider: p, subscriber: s };
  }

  return {
    "subscriber.install": {
      description: "install londiste on the subscriber",
      request: {},
      handler: async () => {
        const result = await installSubscriber(ctx);
        ctx.wake();
        return result;
      },
    },
    "subscriber.register": {
      description: "register replay's consumer on the provider queue (also ends an earlier subscriber unregister)",
      request: {},
      handler: async () => {
        const result = await registerSubscriber(ctx);
        ctx.wake();
        return result;
      },
    },
    "subscriber.unregister": {
      description: `unregister replay's consumer until "subscriber register"; ${UNREGISTER_TABLES_EFFECT}`,
      request: {},
      handler: async () => {
        const result = await unregisterSubscriber(ctx);
        ctx.wake();
        return result;
      },
    },
    "subscriber.uninstall": uninstallCommand(ctx),
    "subscriber.add": {
      description: "replicate provider tables into the subscriber",
      request: {
        tables: names,
        expect_sync: { type: "boolean" },
        skip_truncate: { type: "boolean" },
        force: { type: "boolean" },
        dest_table: { type: "string", maxLength: 300 },
      },
      handler: async (r) => {
        await ready();
        const tables = requireNames(r.tables);
        if (r.expect_sync && r.skip_truncate) throw new CommandError("bad_request", "--expect-sync and --skip-truncate do not go together");
        if (r.dest_table !== undefined && tables.length !== 1) throw new CommandError("bad_request", "--dest-table needs exactly one table");
        await refuseWhileUnregistered(sub, ctx);
        const captured = new Set(await providerTables(ctx.provider, ctx.queue));
        // Registered before the first table joins the set, so no change made after the add is missed.
        let registered = false;
        const outcomes = await perName(tables, async (name) => {
          const table = await canonicalName(sub, name);
          // Before any check: an added table's own checks (and their hints) are beside the point.
          if (await loadTableSync(sub, ctx.queue, table)) return { ok: false, message: "already registered" };
          const dest = r.dest_table === undefined ? table : await canonicalName(sub, r.dest_table as string);
          const refused = (await checkReplicable(sub, table)) ?? (dest === table ? undefined : await checkReplicable(sub, dest));
          if (refused) return { ok: false, message: dest === table ? refused : `${dest}: ${refused}` };
          if (!captured.has(table)) return { ok: false, message: `not captured on the provider: run "londiste CONFIG provider add ${table}" first` };
          const check = await checkOne(table, dest);
          if (check.errors.length > 0 && !r.force) {
            return { ok: false, message: withHint(check.errors.join("; "), FORCE_HINT), warnings: check.warnings };
          }
          let synced = "";
          if (r.expect_sync) {
            const claim = await checkExpectSync(ctx.provider, sub, check.provider!, check.subscriber!, r.force === true);
            if (!claim.ok) return { ok: false, message: claim.message, warnings: check.warnings };
            synced = claim.message;
          }
          if (!registered) {
            await registerConsumer(ctx.provider, ctx.queue, ctx.consumer);
            registered = true;
          }
          await withTransaction(sub, async (client) => {
            await client.query("select londiste.subscriber_add_table($1, $2)", [ctx.queue, table]);
            if (dest !== table) await client.query("select londiste.subscriber_set_dest_table($1, $2, $3)", [ctx.queue, table, dest]);
            if (r.skip_truncate) await client.query("select londiste.subscriber_set_skip_truncate($1, $2, true)", [ctx.queue, table]);
            const added = (await loadTableSync(client, ctx.queue, table))!;
            // The first entry of the table's history; --expect-sync goes straight to ok.
            await recordTableAdded(client, added, "admin");
            if (r.expect_sync) await writeTransition(client, added, { type: "EXPECT_SYNC" }, "admin");
          });
          const warnings = [...check.warnings, ...(check.errors.length > 0 ? check.errors.map((e) => `forced: ${e}`) : [])];
          return { ok: true, message: r.expect_sync ? `added, state ok (${synced})` : "added, waiting for copy", warnings };
        });
        ctx.wake();
        return outcomes;
      },
    },
    "subscriber.remove": {
      description: "stop replicating tables (their rows stay)",
      request: { tables: names },
      handler: async (r) => {
        await requireLondiste(sub, "subscriber");
        const outcomes = await perName(requireNames(r.tables), async (name) =>
          adminStep(sub, ctx, name, { type: "REMOVE" }, () => "removed; its rows stay"),
        );
        ctx.wake();
        return outcomes;
      },
    },
    "subscriber.resync": {
      description: "copy tables again: back to state (none)",
      request: { tables: names },
      handler: async (r) => {
        await requireLondiste(sub, "subscriber");
        const outcomes = await perName(requireNames(r.tables), async (name) =>
          adminStep(sub, ctx, name, { type: "RESYNC" }, (was) => `was ${was}, now (none): it will be copied again`),
        );
        ctx.wake();
        return outcomes;
      },
    },
    "subscriber.tables": {
      description: "list the subscriber's tables with their states",
      request: {},
      handler: async () => {
        await requireLondiste(sub, "subscriber");
        return (await subscriberTables(sub, ctx.queue)).map(tableRow);
      },
    },
    "subscriber.missing": {
      description: "provider tables and sequences the subscriber does not replicate",
      request: {},
      handler: async () => {
        await ready();
        const have = new Set((await subscriberTables(sub, ctx.queue)).map((t) => t.table));
        const haveSeqs = new Set(await subscriberSeqs(sub, ctx.queue));
        return {
          tables: (await providerTables(ctx.provider, ctx.queue)).filter((t) => !have.has(t)),
          seqs: (await providerSeqs(ctx.provider, ctx.queue)).filter((s) => !haveSeqs.has(s)),
        };
      },
    },
    "subscriber.check": {
      description: "check every provider table against its subscriber table",
      request: {},
      handler: async () => {
        await ready();
        const dests = new Map((await subscriberTables(sub, ctx.queue)).map((t) => [t.table, t.dest]));
        const out: NameOutcome[] = [];
        for (const table of await providerTables(ctx.provider, ctx.queue)) {
          const check = await checkOne(table, dests.get(table) ?? table);
          out.push({ name: table, ok: check.errors.length === 0, message: check.errors.join("; ") || "ok", warnings: check.warnings });
        }
        return out;
      },
    },
    "subscriber.fkeys": {
      description: "foreign keys on the subscriber that involve replicated tables, as DROP and ADD statements",
      request: {},
      handler: async () => {
        await requireLondiste(sub, "subscriber");
        const tables = (await subscriberTables(sub, ctx.queue)).map((t) => t.dest);
        // Under an empty search path pg_get_constraintdef qualifies every table it names (REFERENCES public.t(id)).
        const fkeys = await withTransaction(sub, async (client) => {
          await client.query("set local search_path = pg_catalog");
          return foreignKeysTouching(client, tables);
        });
        const { rows: pending } = await sub.query<{ from_table: string; to_table: string; fkey_name: string; fkey_def: string }>(
          "select from_table, to_table, fkey_name, fkey_def from londiste.subscriber_pending_fkeys order by 1, 3",
        );
        return {
          fkeys: fkeys.map((f) => ({
            ...f,
            drop: `alter table only ${f.from} drop constraint ${quoteIdent(f.name)};`,
            create: `alter table only ${f.from} add constraint ${quoteIdent(f.name)} ${f.definition};`,
          })),
          pending: pending.map((p) => ({ name: p.fkey_name, from: p.from_table, to: p.to_table, definition: p.fkey_def })),
        };
      },
    },
    "subscriber.seqs": {
      description: "list the subscriber's sequences",
      request: {},
      handler: async () => {
        await requireLondiste(sub, "subscriber");
        return subscriberSeqs(sub, ctx.queue);
      },
    },
    "subscriber.add-seq": {
      description: "follow provider sequences (never moved backwards)",
      request: { seqs: names },
      handler: async (r) => {
        await ready();
        await refuseWhileUnregistered(sub, ctx);
        const captured = new Set(await providerSeqs(ctx.provider, ctx.queue));
        let registered = false;
        const outcomes = await perName(requireNames(r.seqs), async (name) => {
          const seq = await canonicalName(sub, name);
          const refused = await checkReplicable(sub, seq);
          if (refused) return { ok: false, message: refused };
          if (!captured.has(seq)) {
            const kind = await relationKind(ctx.provider, seq);
            if (kind !== "sequence" && kind !== null) return { ok: false, message: `${seq} is a ${kind}, not a sequence: "subscriber add" replicates tables` };
            return { ok: false, message: `not registered on the provider: run "londiste CONFIG provider add-seq ${seq}" first` };
          }
          const { rows } = await sub.query("select londiste.resolve_name($1, 'S') as oid", [seq]);
          if (rows[0].oid === null) return { ok: false, message: "no such sequence on the subscriber" };
          if (!registered) {
            await registerConsumer(ctx.provider, ctx.queue, ctx.consumer);
            registered = true;
          }
          await sub.query("select londiste.subscriber_add_seq($1, $2)", [ctx.queue, seq]);
          return { ok: true, message: "added" };
        });
        ctx.wake();
        return outcomes;
      },
    },
    "subscriber.remove-seq": {
      description: "stop following sequences",
      request: { seqs: names },
      handler: async (r) => {
        await requireLondiste(sub, "subscriber");
        return perName(requireNames(r.seqs), async (seq) => {
          await sub.query("select londiste.subscriber_remove_seq($1, $2)", [ctx.queue, seq]);
          return { ok: true, message: "removed" };
        });
      },
    },
    "subscriber.triggers": {
      description: "triggers on the subscriber's tables and whether replay fires them",
      request: { tables: { type: "string[]", maxItems: 500, maxLength: 300 } },
      handler: async (r) => {
        await requireLondiste(sub, "subscriber");
        const wanted = r.tables ? new Set(await Promise.all((r.tables as string[]).map((t) => canonicalName(sub, t)))) : undefined;
        const out = [];
        for (const t of await subscriberTables(sub, ctx.queue)) {
          if (wanted && !wanted.has(t.table)) continue;
          for (const trigger of await tableTriggers(sub, t.dest)) {
            const mode = MODE_OF_TGENABLED[trigger.enabled] ?? trigger.enabled;
            out.push({
              table: t.dest,
              trigger: trigger.name,
              kind: trigger.internal ? "constraint" : "user",
              mode,
              fires_on_replay: mode === "always" || mode === "replica",
              fires_on_local_writes: mode === "always" || mode === "origin",
            });
          }
        }
        return out;
      },
    },
    "subscriber.trigger": {
      description: "set when a subscriber trigger fires: always, replica (replay only), origin (local writes only), disable",
      request: { table: { type: "string", required: true, maxLength: 300 }, trigger: { type: "string", required: true, maxLength: 200 }, mode: { type: "string", required: true } },
      handler: async (r) => {
        await requireLondiste(sub, "subscriber");
        const action = TRIGGER_MODES[r.mode as string];
        if (!action) throw new CommandError("bad_request", `mode must be one of ${Object.keys(TRIGGER_MODES).join(", ")}`);
        const table = await canonicalName(sub, r.table as string);
        // The project's own triggers (e.g. the merge_state check) are not the user's to switch off.
        const refused = await checkReplicable(sub, table);
        if (refused) throw new CommandError("bad_request", `${table}: ${refused}`);
        const { rows } = await sub.query<{ rel: string | null; found: boolean }>(
          "select to_regclass($1)::text as rel, exists (select 1 from pg_trigger where tgrelid = to_regclass($1) and tgname = $2 and not tgisinternal) as found",
          [table, r.trigger],
        );
        if (rows[0]!.rel === null) throw new CommandError("not_found", `no such table on the subscriber: ${table}`);
        if (!rows[0]!.found) throw new CommandError("not_found", `no trigger ${r.trigger} on ${table}`);
        await sub.query(`alter table ${rows[0]!.rel} ${action} ${quoteIdent(r.trigger as string)}`);
        return { table, trigger: r.trigger, mode: r.mode };
      },
    },
    "subscriber.deny-writes": {
      description: "refuse writes to replicated tables by anyone but replay",
      request: { tables: names },
      handler: async (r) => denyWrites(sub, ctx, requireNames(r.tables), true),
    },
    "subscriber.allow-writes": {
      description: "drop the deny-writes triggers",
      request: { tables: names },
      handler: async (r) => denyWrites(sub, ctx, requireNames(r.tables), false),
    },
  };
}

/** Adding to the set registers the consumer: not behind the back of an operator's unregister. */
async function refuseWhileUnregistered(sub: pg.Pool, ctx: AdminContext): Promise<void> {
  if ((await unregisteredSince(sub, ctx.consumer)) === null) return;
  throw new CommandError(
    "conflict",
    `the consumer ${ctx.consumer} was unregistered by "subscriber unregister": run "londiste CONFIG subscriber register" first`,
  );
}

/**
 * One admin transition of one table, under replay's position lock (no
 * batch is half applied meanwhile); a conflict with another actor is
 * retried with the re-read state.
 */
async function adminStep(sub: pg.Pool, ctx: AdminContext, name: string, event: SyncEvent, done: (was: string) => string) {
  const table = await canonicalName(sub, name);
  for (let attempt = 0; ; attempt++) {
    try {
      return await withTransaction(sub, async (client) => {
        await lockConsumerPosition(client, ctx.consumer);
        const current = await loadTableSync(client, ctx.queue, table);
        if (!current) return { ok: false, message: "not in the subscriber's set" };
        const result = await writeTransition(client, current, event, "admin");
        if (!result.accepted) return { ok: false, message: result.reason };
        return { ok: true, message: done(stateLabel(current.sync)) };
      });
    } catch (error) {
      if ((error as Error).name !== "SyncConflict" || attempt >= 5) throw error;
    }
  }
}

async function denyWrites(sub: pg.Pool, ctx: AdminContext, tables: string[], deny: boolean) {
  await requireLondiste(sub, "subscriber");
  const dests = new Map((await subscriberTables(sub, ctx.queue)).map((t) => [t.table, t.dest]));
  return perName(tables, async (name) => {
    const table = await canonicalName(sub, name);
    const dest = dests.get(table) ?? table;
    // A deny-writes trigger on the job's own tables would block the copy's and the commands' state writes.
    const refused = await checkReplicable(sub, dest);
    if (refused) return { ok: false, message: refused };
    const { rows } = await sub.query<{ changed: number }>("select londiste.subscriber_deny_writes($1, $2) as changed", [dest, deny]);
    const state = deny ? "writes denied" : "writes allowed";
    return { ok: true, message: rows[0]!.changed ? state : `${state} already` };
  });
}


function tableRow(t: Awaited<ReturnType<typeof subscriberTables>>[number]) {
  return {
    table: t.table,
    state: t.state,
    dest_table: t.dest === t.table ? null : t.dest,
    skip_truncate: t.skipTruncate,
    error: t.lastError,
    error_time: t.errorTime?.toISOString() ?? null,
    copy_worker: t.leaseOwner,
    copy_progress: t.state !== "ok" ? t.copyProgress : null,
  };
}
