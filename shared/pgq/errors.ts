/**
 * Typed errors for PgQ calls. The SQL functions raise plain exceptions with
 * fixed texts (the Skytools 2 ones); this maps each text to a stable `kind`
 * so callers can branch without matching strings, and keeps the original
 * message, SQLSTATE and context.
 */
import type { DatabaseError } from "pg";

export type PgqErrorKind =
  | "queue_not_found"
  | "queue_exists"
  | "consumer_exists"
  | "queue_has_consumers"
  | "queue_external_ticker"
  | "consumer_not_registered"
  | "no_ticks"
  | "tick_not_found"
  | "batch_open"
  | "batch_not_found"
  | "event_not_found"
  | "invalid_argument"
  | "invalid_state"
  | "database";

const KINDS: Array<[RegExp, PgqErrorKind]> = [
  [/^(No such (event )?queue|no such queue(?!\/)|Event queue not (found|created yet)|queue not found)/, "queue_not_found"],
  [/^cannot drop queue, consumers still attached/, "queue_has_consumers"],
  [/^queue already exists/, "queue_exists"],
  [/^consumer already registered/, "consumer_exists"],
  [/^This queue has external tick source/, "queue_external_ticker"],
  [/^(Not subscriber to queue|consumer not registered|no such queue\/consumer)/, "consumer_not_registered"],
  [/^No ticks for this queue/, "no_ticks"],
  [/^cannot reposition, tick not found/, "tick_not_found"],
  [/^reposition while active not allowed/, "batch_open"],
  [/^batch not found/, "batch_not_found"],
  [/^event not found/, "event_not_found"],
  [/^(Invalid NULL value|unknown queue setting)/, "invalid_argument"],
  [/^(Invalid PgQ state|pgq ticker must run)/, "invalid_state"],
];

export class PgqError extends Error {
  readonly kind: PgqErrorKind;
  /** SQLSTATE, e.g. P0001 for a RAISE EXCEPTION. */
  readonly sqlState: string | undefined;
  readonly where: string | undefined;

  constructor(kind: PgqErrorKind, message: string, options: { sqlState?: string; where?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "PgqError";
    this.kind = kind;
    this.sqlState = options.sqlState;
    this.where = options.where;
  }
}

function isDatabaseError(error: unknown): error is DatabaseError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "string" && "severity" in error;
}

/** Turns an error thrown by a PgQ query into a PgqError; other errors pass through. */
export function toPgqError(error: unknown): unknown {
  if (!isDatabaseError(error)) return error;
  const kind = KINDS.find(([pattern]) => pattern.test(error.message))?.[1] ?? "database";
  return new PgqError(kind, error.message, { sqlState: error.code, where: error.where, cause: error });
}

/** Awaits a PgQ query and rethrows its failure as a PgqError. */
export async function pgqCall<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toPgqError(error);
  }
}
