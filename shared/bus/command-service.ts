/**
 * Serves a service's commands over NATS request/reply, registered with the
 * NATS service protocol so `$SRV.PING/INFO/STATS` list the service, its
 * version and its endpoints. Every request is size-checked, parsed and
 * validated before its handler runs; whatever goes wrong becomes an error
 * reply and the service carries on. A request under the prefix that no
 * service serves is answered `unknown_command` (instead of the requester
 * hearing "no responders") by a wildcard subscription outside the $SRV
 * endpoints, in a queue group of its own, so one instance answers.
 */
import { isConnectionError } from "../db/failure.ts";
import { randomBytes } from "node:crypto";
import { errors, headers, type NatsConnection } from "@nats-io/nats-core";
import { type Service, type ServiceMsg, Svcm } from "@nats-io/services";
import { PgqError, type PgqErrorKind } from "../pgq/errors.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import { CommandError, type ErrorCode, type Reply } from "./replies.ts";
import { parseRequestBody, type RequestSchema, validateRequest } from "./validate.ts";

export const MAX_REQUEST_BYTES = 64 * 1024;

export interface CommandSpec {
  description: string;
  request: RequestSchema;
  /** Returns the reply's result; NO_REPLY to stay silent (a request meant for another instance). */
  handler: (request: Record<string, unknown>) => Promise<unknown>;
  /** Every instance receives it (stop, reload); otherwise one instance of the queue group does. */
  everyInstance?: boolean;
}

/** Handler result meaning "not for me: send nothing". */
export const NO_REPLY = Symbol("no reply");

export interface CommandServiceOptions {
  /** Service name for $SRV (letters, digits, - and _). */
  name: string;
  version: string;
  description: string;
  /** Subject prefix; command X listens on `<prefix>.X`. */
  subjectPrefix: string;
  commands: Record<string, CommandSpec>;
  metadata?: Record<string, string>;
  /** Extra figures for $SRV.STATS. */
  stats?: () => unknown;
  log: Logger;
  /** Queue group sharing the commands among instances (default "q"). */
  queue?: string;
  /**
   * Who answers `unknown_command` under the prefix. Default: this service,
   * knowing only its own commands (it owns the prefix). When services
   * share a prefix, one of them passes every command served there, the
   * others "none".
   */
  unknownCommands?: UnknownCommandsOptions | "none";
}

export interface UnknownCommandsOptions {
  /** Queue group of the answering subscription, shared by the instances of the service. */
  queue: string;
  /** Every command served under the prefix, by this service or another. */
  known: readonly string[];
  /** Subjects under the prefix that are published to, not requested: exact, or `x.>` for everything below x. */
  notCommands?: readonly string[];
  /**
   * For a known command of another service: whether one of those runs.
   * The wildcard also receives those requests, so NATS no longer says "no
   * responders" when none runs; when this says none does, the answer is
   * the same no-responders status NATS itself would send.
   */
  ownerRuns?: (command: string) => Promise<boolean>;
}

/** What a request under the prefix is, as the catch-all sees it. */
export function classifySubject(
  suffix: string,
  own: readonly string[],
  o: Pick<UnknownCommandsOptions, "known" | "notCommands">,
): "own" | "other-service" | "not-a-command" | "unknown" {
  if (own.includes(suffix)) return "own";
  if (o.known.includes(suffix)) return "other-service";
  const published = (o.notCommands ?? []).some((p) => (p.endsWith(".>") ? suffix.startsWith(p.slice(0, -1)) : suffix === p));
  return published ? "not-a-command" : "unknown";
}

/** The reply to a request for an unknown command. */
export function unknownCommandReply(suffix: string, prefix: string, known: readonly string[]): Reply {
  return {
    error: {
      code: "unknown_command",
      message: `no command "${suffix}" on ${prefix}; the commands: ${[...known].sort().join(", ")}`,
    },
  };
}

const PGQ_KIND_CODES: Record<PgqErrorKind, ErrorCode> = {
  queue_not_found: "not_found",
  consumer_not_registered: "not_found",
  tick_not_found: "not_found",
  batch_not_found: "not_found",
  event_not_found: "not_found",
  queue_has_consumers: "conflict",
  queue_exists: "conflict",
  consumer_exists: "conflict",
  queue_external_ticker: "conflict",
  no_ticks: "conflict",
  batch_open: "conflict",
  invalid_state: "conflict",
  invalid_argument: "bad_request",
  database: "internal",
};

/** SQLSTATEs outside class 22 that mean the request's input is wrong. */
const BAD_INPUT_CODES = new Set([
  "42601", // syntax_error
  "42602", // invalid_name: londiste.canonical_name's 'bad name'
  "42622", // name_too_long
]);

/** Maps anything a handler throws to an error reply. */
export function errorReply(error: unknown): Reply {
  if (error instanceof CommandError) return { error: { code: error.code, message: error.message } };
  if (error instanceof PgqError && error.kind !== "database") return { error: { code: PGQ_KIND_CODES[error.kind], message: error.message } };
  // Other database errors (also when wrapped as a PgqError of kind "database") by SQLSTATE.
  const code = error instanceof PgqError ? error.sqlState : (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  // A database that cannot be reached or is shutting down (also one that refuses connections for now).
  if (isConnectionError(error instanceof PgqError ? { code, message } : error)) return { error: { code: "unavailable", message } };
  if (code === "23505") return { error: { code: "conflict", message } };
  // Class 22 (data exception: a value that does not convert, is out of range, ...), syntax errors and
  // names that are not (qualified) identifiers.
  if (typeof code === "string" && (code.startsWith("22") || BAD_INPUT_CODES.has(code))) return { error: { code: "bad_request", message } };
  return { error: { code: "internal", message } };
}

/** Handles one raw request: size, JSON, schema, handler. Never throws. */
export async function handleRequest(spec: CommandSpec, data: Uint8Array): Promise<Reply | typeof NO_REPLY> {
  if (data.length > MAX_REQUEST_BYTES) {
    return { error: { code: "bad_request", message: `request is larger than ${MAX_REQUEST_BYTES} bytes` } };
  }
  const parsed = parseRequestBody(new TextDecoder().decode(data));
  if (!parsed.ok) return { error: { code: "bad_request", message: parsed.message } };
  const validated = validateRequest(spec.request, parsed.value);
  if (!validated.ok) return { error: { code: "bad_request", message: validated.message } };
  try {
    const result = await spec.handler(validated.value);
    return result === NO_REPLY ? NO_REPLY : { result: result ?? null };
  } catch (error) {
    return errorReply(error);
  }
}

export async function startCommandService(nc: NatsConnection, options: CommandServiceOptions): Promise<Service> {
  const service = await new Svcm(nc).add({
    name: options.name,
    version: options.version,
    description: options.description,
    metadata: options.metadata,
    queue: options.queue ?? "q",
    statsHandler: options.stats ? async () => options.stats!() : undefined,
  });
  // An endpoint's queue "" falls back to the service's queue group, so commands that every
  // instance must receive get a queue group of their own per instance instead.
  const ownQueue = `${options.queue ?? "q"}-${randomBytes(8).toString("hex")}`;
  for (const [name, spec] of Object.entries(options.commands)) {
    service.addEndpoint(name.replace(/[^A-Za-z0-9_-]/g, "_"), {
      subject: `${options.subjectPrefix}.${name}`,
      metadata: { description: spec.description },
      ...(spec.everyInstance ? { queue: ownQueue } : {}),
      handler: (_err: Error | null, msg: ServiceMsg) => {
        void handleRequest(spec, msg.data).then((reply) => {
          if (reply === NO_REPLY) return;
          if ("error" in reply) options.log.warn({ command: name, error: reply.error }, "command failed");
          else options.log.info({ command: name }, "command done");
          if (msg.reply) msg.respond(JSON.stringify(reply));
        });
      },
    });
  }
  if (options.unknownCommands !== "none") answerUnknownCommands(nc, service, options, options.unknownCommands ?? {
    queue: `${options.queue ?? "q"}-unknown`,
    known: Object.keys(options.commands),
  });
  // Callers log "serving ..." next: a round trip makes the server hold the subscriptions by then, so a
  // request sent right after that line is answered. Bounded: a NATS outage must not hold up the service.
  const settle = new AbortController();
  await Promise.race([nc.flush().catch(() => undefined), sleep(2000, settle.signal)]);
  settle.abort();
  return service;
}

/**
 * The catch-all under the prefix: a plain subscription, not a $SRV
 * endpoint, so discovery lists the real commands only. Stays silent on
 * the service's own commands (their endpoints answer) and on publishes.
 */
function answerUnknownCommands(nc: NatsConnection, service: Service, options: CommandServiceOptions, unknown: UnknownCommandsOptions): void {
  const own = Object.keys(options.commands);
  const wildcard = nc.subscribe(`${options.subjectPrefix}.>`, {
    queue: unknown.queue,
    callback: (_err, msg) => {
      if (!msg.reply) return;
      const suffix = msg.subject.slice(options.subjectPrefix.length + 1);
      const kind = classifySubject(suffix, own, unknown);
      if (kind === "unknown") {
        options.log.warn({ subject: msg.subject }, "request for an unknown command");
        msg.respond(JSON.stringify(unknownCommandReply(suffix, options.subjectPrefix, unknown.known)));
      } else if (kind === "other-service" && unknown.ownerRuns) {
        void unknown.ownerRuns(suffix).then(
          (runs) => {
            if (!runs) msg.respond(new Uint8Array(0), { headers: headers(503, "No Responders") });
          },
          () => {}, // unsure: stay silent, the requester times out as before
        );
      }
    },
  });
  void service.stopped.then(() => wildcard.unsubscribe());
}

/**
 * Whether an instance of the named service runs (answers `$SRV.PING`)
 * with the given metadata, e.g. `{ job: "myjob" }`.
 */
export async function serviceRuns(nc: NatsConnection, name: string, metadata: Record<string, string>, waitMs = 2000): Promise<boolean> {
  try {
    const replies = await nc.requestMany(`$SRV.PING.${name}`, "", { strategy: "stall", stall: 300, maxWait: waitMs });
    for await (const msg of replies) {
      const info = JSON.parse(msg.string()) as { metadata?: Record<string, string> };
      if (Object.entries(metadata).every(([k, v]) => info.metadata?.[k] === v)) return true;
    }
  } catch (error) {
    // No instance of the service at all, for any job.
    const noResponders = error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.cause instanceof errors.NoRespondersError);
    if (!noResponders) throw error;
  }
  return false;
}
