/**
 * What a failure means for the table being copied:
 *  - TableFailure, and data errors (SQLSTATE classes 22 data exception,
 *    23 integrity constraint, 42 syntax/undefined object/privilege; an
 *    ApplyError or a change that cannot be decoded): doing it again gives
 *    the same result, so the table goes to state error with the message;
 *  - StepAbandoned: the table's row moved on (another state, the lease gone);
 *    the worker re-reads it and decides again;
 *  - anything else (lost connection, server shutdown, deadlock, a timeout):
 *    rolled back and retried after a pause.
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

const DATA_CLASSES = new Set(["22", "23", "42"]);

export function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; sqlState?: unknown } | null;
  if (typeof e?.code === "string" && e.code.length === 5) return e.code;
  if (typeof e?.sqlState === "string") return e.sqlState;
  return undefined;
}

export function isDataError(error: unknown): boolean {
  if (error instanceof TableFailure) return true;
  if (error instanceof Error && (error.name === "ApplyError" || error.name === "RecordTextError")) return true;
  const code = sqlState(error);
  return code !== undefined && DATA_CLASSES.has(code.slice(0, 2));
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
