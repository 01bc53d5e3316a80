/**
 * The copy's own failures. What any failure means for the table being
 * copied is shared/db/failure.ts's rule, the one replay uses too:
 *  - data (a TableFailure below, a database error about the data, a
 *    change that cannot be decoded or applied): doing it again gives the
 *    same result, so the table goes to state error with the message;
 *  - StepAbandoned: the table's row moved on (another state, the lease
 *    gone); the worker re-reads it and decides again;
 *  - anything else (lost connection, server shutdown, deadlock, a timeout,
 *    a missing privilege): rolled back and retried after a pause.
 */

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

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
