/**
 * How command-line tools talk to services: one NATS request, a bounded
 * wait, and a one-line explanation when nobody answers or NATS refuses
 * the request to this user.
 */
import { errors, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { natsConnectionOptions, type NatsSettings } from "../bus/connect.ts";
import type { Reply } from "../bus/replies.ts";
import { natsUserLabel, notPermittedMessage, permissionViolation } from "../bus/permissions.ts";

/** Why no service answered: NATS could not be reached, nobody listens on the subject, or nobody replied in time. */
export type NoServiceReason = "unreachable" | "no_responders" | "timeout";

export class NoServiceError extends Error {
  constructor(
    message: string,
    readonly reason: NoServiceReason = "timeout",
  ) {
    super(message);
    this.name = "NoServiceError";
  }
}

/** NATS refused a publish or subscribe of the command to the configured user. */
export class NotPermittedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotPermittedError";
  }
}

/** Throws NotPermittedError when `error` is (or wraps) a permissions violation; else returns. */
export function throwIfNotPermitted(error: unknown, settings: NatsSettings): void {
  const violation = permissionViolation(error);
  if (violation) throw new NotPermittedError(notPermittedMessage(violation, natsUserLabel(settings), settings.inboxPrefix));
}

/**
 * One-shot commands give up at once when the connection drops; `reconnect`
 * (long-running watchers) keeps reconnecting forever after the first
 * connection, like the services.
 */
export async function connectForCli(settings: NatsSettings, timeoutMs: number, reconnect = false): Promise<NatsConnection> {
  try {
    return await connect({
      ...natsConnectionOptions(settings),
      waitOnFirstConnect: false,
      maxReconnectAttempts: reconnect ? -1 : 0,
      timeout: timeoutMs,
    });
  } catch (error) {
    const refused = error instanceof errors.AuthorizationError ? ` (as ${natsUserLabel(settings)}: check nats_user and nats_password, nats_token or nats_creds)` : "";
    throw new NoServiceError(`cannot connect to NATS at ${settings.url}: ${(error as Error).message}${refused}`, refused ? "timeout" : "unreachable");
  }
}

/**
 * Sends a request and returns the reply; NoServiceError when nobody answers
 * in time, NotPermittedError when NATS refuses it to `settings`' user.
 */
export async function requestReply(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeoutMs: number,
  howToStart: string,
  settings: NatsSettings,
): Promise<Reply> {
  try {
    const msg = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs });
    return JSON.parse(msg.string()) as Reply;
  } catch (error) {
    throwIfNotPermitted(error, settings);
    const noResponders =
      error instanceof errors.NoRespondersError ||
      (error instanceof errors.RequestError && error.cause instanceof errors.NoRespondersError);
    if (noResponders) throw new NoServiceError(`no service is listening on ${subject}: ${howToStart}`, "no_responders");
    if (error instanceof errors.TimeoutError || error instanceof errors.RequestError) {
      throw new NoServiceError(`no service answered on ${subject} within ${timeoutMs / 1000} s: ${howToStart}`, "timeout");
    }
    throw error;
  }
}

/**
 * For `stop`/`reload INSTANCE`: every instance receives those and only the
 * named one answers, so a name nobody has would look like no service at
 * all. Asks `ping` (every instance answers) who runs: a message when
 * services answer and none is `instance`, else null (the name is known,
 * or nothing runs and the request itself says so).
 */
export async function unknownInstance(nc: NatsConnection, pingSubject: string, instance: string, timeoutMs: number): Promise<string | null> {
  const seen: string[] = [];
  try {
    // Replies after the first come within the stall; the named one ends the wait at once.
    const replies = await nc.requestMany(pingSubject, "{}", { strategy: "stall", stall: 1000, maxWait: timeoutMs });
    for await (const msg of replies) {
      const reply = JSON.parse(msg.string()) as Reply<{ instance?: string; service?: string }>;
      if (!("result" in reply) || typeof reply.result?.instance !== "string") continue;
      if (reply.result.instance === instance) return null;
      seen.push(reply.result.service ? `${reply.result.instance} (${reply.result.service})` : reply.result.instance);
    }
  } catch {
    return null; // nobody answered: the request that follows reports it
  }
  return seen.length > 0 ? `no such instance "${instance}"; running: ${seen.sort().join(", ")}` : null;
}
