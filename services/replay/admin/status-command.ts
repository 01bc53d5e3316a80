/**
 * `londiste CONFIG status`: how far behind the job is and where each
 * table stands, from both databases and the answering replay instance.
 */
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { subscriberSeqs, subscriberTables } from "../../../shared/londiste/catalog.ts";
import { londisteSchemaVersion } from "../../../shared/londiste/install.ts";
import { getConsumerInfo, getQueueInfo } from "../../../shared/pgq/index.ts";
import { tickerWarning } from "../../../shared/pgq/ticker-health.ts";
import { recordedTick } from "../../../shared/londiste/position.ts";
import { unregisteredSince } from "../../../shared/londiste/subscriber-registration.ts";
import type { AdminContext } from "./context.ts";

export function statusCommand(ctx: AdminContext): CommandSpec {
  return {
    description: "job lag, last tick and the state of each table",
    request: {},
    handler: async () => {
      const [providerVersion, subscriberVersion] = await Promise.all([
        londisteSchemaVersion(ctx.provider),
        londisteSchemaVersion(ctx.subscriber),
      ]);
      const consumer =
        providerVersion > 0
          ? (await getConsumerInfo(ctx.provider, ctx.queue, ctx.consumer).catch(() => []))[0]
          : undefined;
      const queue = providerVersion > 0 ? (await getQueueInfo(ctx.provider, ctx.queue).catch(() => []))[0] : undefined;
      const tables = subscriberVersion > 0 ? await subscriberTables(ctx.subscriber, ctx.queue) : [];
      const seqs = subscriberVersion > 0 ? await subscriberSeqs(ctx.subscriber, ctx.queue) : [];
      const recorded = subscriberVersion > 0 ? await recordedTick(ctx.subscriber, ctx.consumer) : null;
      const unregistered = subscriberVersion > 0 ? await unregisteredSince(ctx.subscriber, ctx.consumer) : null;
      return {
        job: ctx.jobName,
        queue: ctx.queue,
        consumer: ctx.consumer,
        provider_installed: providerVersion > 0,
        subscriber_installed: subscriberVersion > 0,
        registered: consumer !== undefined,
        unregistered_at: unregistered?.toISOString() ?? null,
        lag_s: consumer?.lagSeconds ?? null,
        last_seen_s: consumer?.lastSeenSeconds ?? null,
        last_tick: consumer?.lastTick ?? null,
        pending_events: consumer?.pendingEvents ?? null,
        ticker_lag_s: queue?.tickerLagSeconds ?? null,
        ticker_warning: queue ? tickerWarning(queue) : null,
        subscriber_tick: recorded,
        replay: ctx.live(),
        tables: tables.map((t) => ({
          table: t.table,
          state: t.state,
          dest_table: t.dest === t.table ? null : t.dest,
          error: t.lastError,
          copy_worker: t.leaseOwner,
          copy_progress: t.state !== "ok" ? t.copyProgress : null,
        })),
        seqs,
      };
    },
  };
}
