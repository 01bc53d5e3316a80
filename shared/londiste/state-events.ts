/**
 * State changes of replicated tables on JetStream. Every transition of the
 * table-sync machine is written to londiste.sync_outbox in the transaction
 * that made it (sync-store.ts); relayOutbox publishes the unpublished rows
 * in order to the job's stream with a de-duplication id, then marks them,
 * so a subscriber misses none even when NATS was down at the moment of
 * the change, and a row published twice (crash between publish and mark)
 * is stored once.
 *
 * Stream `LONDISTE_<prefix>_<job>` (tokens: letters, digits, _ and -),
 * subjects `<prefix>.londiste.<job>.events.<table token>`, one message
 * per transition (StateChangeMessage as JSON), Nats-Msg-Id
 * `<job>:<queue>:<outbox id>`.
 */
import { ADVISORY_LOCKS } from "../db/advisory-locks.ts";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type pg from "pg";
import { subjectToken } from "../config/common-keys.ts";
import { londisteSubjects } from "../config/londiste.ts";

export interface StateChangeMessage {
  job: string;
  queue: string;
  table: string;
  /** Seed text form; null is (none). */
  from: string | null;
  /** Seed text form; null is (none), "removed" when the table left the set. */
  to: string | null;
  /** The machine event, with `actor` (replay, copy, admin). */
  event: Record<string, unknown>;
  /** The table row's sync_version after the change. */
  version: number;
  /** Outbox id: increases with every change of a job. */
  id: number;
  time: string;
}

const NANOS_PER_SECOND = 1_000_000_000;

export function stateStreamName(prefix: string, job: string): string {
  return `LONDISTE_${subjectToken(prefix)}_${subjectToken(job)}`;
}

export function stateSubject(prefix: string, job: string, table: string): string {
  return londisteSubjects(prefix, job).stateEvents(subjectToken(table));
}

/** Creates the job's stream when it does not exist. */
export async function ensureStateStream(nc: NatsConnection, prefix: string, job: string): Promise<string> {
  const name = stateStreamName(prefix, job);
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(name);
  } catch {
    await jsm.streams.add({
      name,
      subjects: [`${londisteSubjects(prefix, job).commandPrefix}.events.>`],
      duplicate_window: 10 * 60 * NANOS_PER_SECOND,
      max_age: 14 * 24 * 3600 * NANOS_PER_SECOND,
    });
  }
  return name;
}

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
 * the round), so the stream keeps the order.
 */
export async function relayOutbox(
  subscriber: pg.Pool,
  nc: NatsConnection,
  prefix: string,
  job: string,
  queue: string,
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
