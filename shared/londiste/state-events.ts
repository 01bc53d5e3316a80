/**
 * State changes of replicated tables on JetStream: the stream, its
 * subjects and the message, as publishers (outbox-relay.ts) and watchers
 * see them.
 *
 * Stream `LONDISTE_<prefix>_<job>` (tokens: letters, digits, _ and -),
 * subjects `<prefix>.londiste.<job>.events.<table token>`, one message
 * per transition (StateChangeMessage as JSON), Nats-Msg-Id
 * `<job>:<queue>:<outbox id>`.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
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

/** Deletes the job's stream; false when there was none. */
export async function deleteStateStream(nc: NatsConnection, prefix: string, job: string): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  try {
    return await jsm.streams.delete(stateStreamName(prefix, job));
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return false;
    throw error;
  }
}

/**
 * Creates the job's stream when it does not exist, with `replicas` copies
 * (state_stream_replicas: on a NATS cluster, 3 keeps the events through
 * the loss of a node, its leader included). An existing stream is left as
 * it is.
 */
export async function ensureStateStream(nc: NatsConnection, prefix: string, job: string, replicas = 1): Promise<string> {
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
      num_replicas: replicas,
    });
  }
  return name;
}
