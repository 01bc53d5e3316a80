/**
 * The pgqadm admin commands, served over NATS by every ticker instance of
 * a job (one instance answers each request: queue group). Each is a thin
 * call of the PgQ SQL API; request fields are validated before they get
 * here and reach SQL only as bind parameters. `create` stops at the
 * configured number of queues, so no request can fill the database with
 * queues (each one is three tables and a ticker's work).
 */
import type pg from "pg";
import type { CommandSpec } from "../../shared/bus/command-service.ts";
import { CommandError } from "../../shared/bus/replies.ts";
import {
  createQueue,
  dropQueue,
  getBatchEvents,
  getConsumerInfo,
  getQueueInfo,
  installPgq,
  pgVersions,
  registerConsumer,
  setQueueConfig,
  unregisterConsumer,
} from "../../shared/pgq/index.ts";
import { pgqCall } from "../../shared/pgq/errors.ts";

const name = { type: "string", required: true, maxLength: 200 } as const;

export const QUEUE_SETTINGS = [
  "ticker_max_count",
  "ticker_max_lag",
  "ticker_idle_period",
  "rotation_period",
  "ticker_paused",
  "external_ticker",
] as const;


async function queueSettings(pool: pg.Pool, queue: string) {
  const [info] = await getQueueInfo(pool, queue);
  if (!info) throw new CommandError("not_found", `No such event queue: ${queue}`);
  return {
    queue: info.queueName,
    ticker_max_count: info.tickerMaxCount,
    ticker_max_lag: `${info.tickerMaxLagSeconds} seconds`,
    ticker_idle_period: `${info.tickerIdlePeriodSeconds} seconds`,
    rotation_period: `${info.rotationPeriodSeconds} seconds`,
    ticker_paused: info.tickerPaused,
    external_ticker: info.externalTicker,
  };
}

/** Refuses a new queue when the database holds `max` already (an existing one is fine: create is idempotent). */
async function checkQueueLimit(pool: pg.Pool, queue: string, max: number): Promise<void> {
  const { rows } = await pgqCall(
    pool.query<{ n: number; exists: boolean }>("select count(*)::int as n, coalesce(bool_or(queue_name = $1), false) as exists from pgq.queue", [queue]),
  );
  const { n, exists } = rows[0]!;
  if (!exists && n >= max) {
    throw new CommandError("conflict", `the database holds ${n} queues, the most max_queues (${max}) allows: drop one or raise max_queues`);
  }
}

export function adminCommands(pool: pg.Pool, limits: { maxQueues: () => number }): Record<string, CommandSpec> {
  return {
    install: {
      description: "install or upgrade the PgQ schema in the ticker's database",
      request: {},
      handler: async () => {
        await installPgq(pool);
        return await pgVersions(pool);
      },
    },
    create: {
      description: "create a queue",
      request: { queue: name },
      handler: async (r) => {
        await checkQueueLimit(pool, r.queue as string, limits.maxQueues());
        return { queue: r.queue, created: await createQueue(pool, r.queue as string) };
      },
    },
    drop: {
      description: "drop a queue (no consumers may be registered)",
      request: { queue: name },
      handler: async (r) => {
        await dropQueue(pool, r.queue as string);
        return { queue: r.queue, dropped: true };
      },
    },
    register: {
      description: "register a consumer on a queue, at its newest tick",
      request: { queue: name, consumer: name },
      handler: async (r) => ({
        queue: r.queue,
        consumer: r.consumer,
        registered: await registerConsumer(pool, r.queue as string, r.consumer as string),
      }),
    },
    unregister: {
      description: "unregister a consumer (drops its retry and failed events)",
      request: { queue: name, consumer: name },
      handler: async (r) => {
        await unregisterConsumer(pool, r.queue as string, r.consumer as string);
        return { queue: r.queue, consumer: r.consumer, unregistered: true };
      },
    },
    config: {
      description: "show a queue's settings, or change some (settings: {key: value})",
      request: { queue: name, settings: { type: "object" } },
      handler: async (r) => {
        const queue = r.queue as string;
        const settings = (r.settings ?? {}) as Record<string, unknown>;
        const entries = Object.entries(settings);
        for (const [key, value] of entries) {
          const bare = key.replace(/^queue_/, "");
          if (!(QUEUE_SETTINGS as readonly string[]).includes(bare)) {
            throw new CommandError("bad_request", `unknown queue setting: ${key} (known: ${QUEUE_SETTINGS.join(", ")})`);
          }
          if (typeof value !== "string" || value.length > 100) {
            throw new CommandError("bad_request", `setting ${key}: value must be a string of at most 100 characters`);
          }
        }
        if (entries.length > 0) {
          const client = await pool.connect();
          try {
            await client.query("begin");
            for (const [key, value] of entries) await setQueueConfig(client, queue, key, value as string);
            await client.query("commit");
          } catch (error) {
            await client.query("rollback").catch(() => {});
            throw error;
          } finally {
            client.release();
          }
        }
        return await queueSettings(pool, queue);
      },
    },
    status: {
      description: "Postgres and PgQ versions, queues with ticker state, consumers with lag",
      request: {},
      handler: async () => ({
        ...(await pgVersions(pool)),
        queues: (await getQueueInfo(pool)).map((q) => ({
          queue: q.queueName,
          ntables: q.ntables,
          cur_table: q.curTable,
          rotation_period_s: q.rotationPeriodSeconds,
          ticker_max_count: q.tickerMaxCount,
          ticker_max_lag_s: q.tickerMaxLagSeconds,
          ticker_idle_period_s: q.tickerIdlePeriodSeconds,
          ticker_paused: q.tickerPaused,
          external_ticker: q.externalTicker,
          ticker_lag_s: q.tickerLagSeconds,
          last_tick_id: q.lastTickId,
          pending_events: q.newEvents,
          events_per_s: q.eventsPerSecond,
        })),
        consumers: (await getConsumerInfo(pool)).map((c) => ({
          queue: c.queueName,
          consumer: c.consumerName,
          lag_s: c.lagSeconds,
          last_seen_s: c.lastSeenSeconds,
          last_tick: c.lastTick,
          current_batch: c.currentBatch,
          pending_events: c.pendingEvents,
        })),
      }),
    },
    "queue-rename": {
      description: "rename a queue",
      request: { old: name, new: name },
      handler: async (r) => {
        await pgqCall(pool.query("select pgq.rename_queue($1, $2)", [r.old, r.new]));
        return { old: r.old, new: r.new, renamed: true };
      },
    },
    "show-batch-events": {
      description: "list the events of an open batch",
      request: { batch: { type: "integer", required: true, min: 1 } },
      handler: async (r) => ({ batch: r.batch, events: await getBatchEvents(pool, r.batch as number) }),
    },
    "del-event": {
      description: "delete one event from a consumer's retry or failed queue",
      request: { queue: name, consumer: name, event: { type: "integer", required: true, min: 0 } },
      handler: async (r) => {
        const { rows } = await pgqCall(
          pool.query<{ n: number }>("select pgq.consumer_event_delete($1, $2, $3) as n", [r.queue, r.consumer, r.event]),
        );
        return { queue: r.queue, consumer: r.consumer, event: r.event, deleted: rows[0]!.n };
      },
    },
    "reg-copy": {
      description: "register consumer `to` at the position of consumer `from`",
      request: { queue: name, from: name, to: name },
      handler: async (r) => {
        const { rows } = await pgqCall(
          pool.query<{ tick: string }>("select pgq.register_consumer_copy($1, $2, $3, false) as tick", [r.queue, r.from, r.to]),
        );
        return { queue: r.queue, from: r.from, to: r.to, tick: Number(rows[0]!.tick) };
      },
    },
    "reg-move": {
      description: "register consumer `to` at the position of `from`, then unregister `from`, in one transaction",
      request: { queue: name, from: name, to: name },
      handler: async (r) => {
        const { rows } = await pgqCall(
          pool.query<{ tick: string }>("select pgq.register_consumer_copy($1, $2, $3, true) as tick", [r.queue, r.from, r.to]),
        );
        return { queue: r.queue, from: r.from, to: r.to, tick: Number(rows[0]!.tick) };
      },
    },
  };
}
