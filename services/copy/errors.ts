/**
 * What a failure means for the table being copied:
 *  - TableFailure, and data errors (shared/londiste/error-kind.ts: any
 *    database error but a connection, shutdown, deadlock, lock-timeout or
 *    resource one; an ApplyError or a change that cannot be decoded):
 *    doing it again gives the same result, so the table goes to state
 *    error with the message;
 *  - StepAbandoned: the table's row moved on (another state, the lease gone);
 *    the worker re-reads it and decides again;
 *  - anything else (lost connection, server shutdown, deadlock, a timeout):
 *    rolled back and retried after a pause.
 */

import { isDataError as isSharedDataError } from "../../shared/londiste/error-kind.ts";

export { sqlState } from "../../shared/londiste/error-kind.ts";

/** The table cannot be copied as things are: FAIL it with this message. */
export class TableFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TableFailure";
  }
}

/** The step's precondition no longer holds (state changed, lease lost): re-read and decide again. */
export class StepAbandoned extends Error {
  constructor(
    message: string,
    /** The lease is someone else's now: stop working on the table. */
    readonly leaseLost = false,
  ) {
    super(message);
    this.name = "StepAbandoned";
  }
}

/** Data errors by the rule replay uses too (shared/londiste/error-kind.ts), and TableFailure. */
export function isDataError(error: unknown): boolean {
  return error instanceof TableFailure || isSharedDataError(error);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
