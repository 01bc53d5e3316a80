/**
 * The outbox relay: every transition of the table-sync machine is written
 * to londiste.sync_outbox in the transaction that made it (sync-store.ts);
 * the relay publishes the unpublished rows in order to the job's stream
 * (state-events.ts) with a de-duplication id, then marks them, so a watcher
 * misses none even when NATS was down at the moment of the change, and a
 * row published twice (crash between publish and mark) is stored once.
 * One relay at a time per queue (the outboxRelay advisory lock), so the
 * stream keeps the order whichever replay instance runs it. The stream is
 * created before the first publish, not before: a replay whose subscriber
 * database does not exist (or has no londiste) leaves no stream behind.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type pg from "pg";
import { ADVISORY_LOCKS } from "../db/advisory-locks.ts";
import { isNotInstalledError } from "../db/failure.ts";
import type { Logger } from "../log.ts";
import { ensureStateStream, type StateChangeMessage, stateSubject } from "./state-events.ts";

export const RELAY_INTERVAL_MS = 1000;
/** A failing relay says so at most this often. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

interface OutboxRow {
  id: string;
  table_name: string;
  from_state: string | null;
  to_state: string | null;
  event: Record<string, unknown>;
  version: string;
  created_at: Date;
}

/**
 * Publishes the queue's unpublished state changes in id order; returns how
 * many. One relay at a time per queue (a transaction lock; others skip
 * the round), so the stream keeps the order. `ensureStream` runs before
 * the first publish of a round.
 */
export async function relayOutbox(
  subscriber: pg.Pool,
  nc: NatsConnection,
  prefix: string,
  job: string,
  queue: string,
  ensureStream: () => Promise<void>,
  limit = 200,
): Promise<number> {
  const js = jetstream(nc);
  const client = await subscriber.connect();
  let broken: Error | undefined;
  try {
    await client.query("begin");
    const { rows: lock } = await client.query<{ ok: boolean }>(
      "select pg_try_advisory_xact_lock($1, hashtext($2)) as ok",
      [ADVISORY_LOCKS.outboxRelay.classId, queue],
    );
    if (!lock[0]!.ok) {
      await client.query("rollback");
      return 0;
    }
    const { rows } = await client.query<OutboxRow>(
      `select id, table_name, from_state, to_state, event, version, created_at
         from londiste.sync_outbox
        where published_at is null and queue_name = $1
        order by id limit $2`,
      [queue, limit],
    );
    const done: string[] = [];
    try {
      if (rows.length > 0) await ensureStream();
      for (const r of rows) {
        const message: StateChangeMessage = {
          job,
          queue,
          table: r.table_name,
          from: r.from_state,
          to: r.to_state,
          event: r.event,
          version: Number(r.version),
          id: Number(r.id),
          time: r.created_at.toISOString(),
        };
        await js.publish(stateSubject(prefix, job, r.table_name), JSON.stringify(message), { msgID: `${job}:${queue}:${r.id}` });
        done.push(r.id);
      }
    } finally {
      // What was acknowledged is marked even when a later publish failed.
      if (done.length > 0) await client.query("update londiste.sync_outbox set published_at = now() where id = any($1::int8[])", [done]);
      await client.query("commit");
    }
    return done.length;
  } catch (error) {
    await client.query("rollback").catch((e: unknown) => (broken = e as Error));
    throw error;
  } finally {
    client.release(broken);
  }
}

export interface OutboxRelayOptions {
  subscriber: pg.Pool;
  nc: NatsConnection;
  prefix: string;
  job: string;
  queue: string;
  log: Logger;
  /** Replicas of the stream when the relay creates it (state_stream_replicas). */
  replicas?: number;
}

/**
 * Relays every second until the backlog is gone; survives NATS and
 * database outages (the rows wait in the outbox). Returns the stop function.
 */
export function startOutboxRelay(o: OutboxRelayOptions): () => void {
  let running = false;
  let stopped = false;
  let failedAt = 0;
  // Checked once per run of the relay; after a failure (the stream deleted meanwhile, say) again.
  let streamChecked = false;
  const ensureStream = async () => {
    if (streamChecked) return;
    const stream = await ensureStateStream(o.nc, o.prefix, o.job, o.replicas);
    o.log.info({ stream }, "relaying table state changes to JetStream");
    streamChecked = true;
  };
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = true;
    void (async () => {
      try {
        while (!stopped && (await relayOutbox(o.subscriber, o.nc, o.prefix, o.job, o.queue, ensureStream)) > 0);
      } catch (error) {
        streamChecked = false;
        // Before londiste is installed on the subscriber there is nothing to relay.
        if (!isNotInstalledError(error) && Date.now() - failedAt > FAILURE_LOG_INTERVAL_MS) {
          failedAt = Date.now();
          o.log.warn({ err: error }, "relaying state changes failed; retrying");
        }
      } finally {
        running = false;
      }
    })();
  }, RELAY_INTERVAL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
