/**
 * The reply shapes of every command, on every service:
 *   success: { "result": <command-specific> }
 *   failure: { "error": { "code": <ErrorCode>, "message": <text> } }
 */

export type ErrorCode =
  | "bad_request" // malformed JSON, unknown/missing/mistyped field, payload too large
  | "unknown_command"
  | "not_found" // queue, consumer, table, batch, event ...
  | "conflict" // exists already, still in use, wrong state
  | "unavailable" // database down or similar; try again
  | "internal";

export interface ErrorReply {
  error: { code: ErrorCode; message: string };
}

export interface OkReply<T = unknown> {
  result: T;
}

export type Reply<T = unknown> = OkReply<T> | ErrorReply;

/** An error a command handler throws to send a specific error reply. */
export class CommandError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

export function isErrorReply(reply: unknown): reply is ErrorReply {
  return typeof reply === "object" && reply !== null && "error" in reply;
}
