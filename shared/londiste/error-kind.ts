/**
 * Whether a failure while applying or copying a table's changes is the
 * data's (doing it again gives the same result: the table goes to state
 * error with the message, the others go on) or the moment's (lost
 * connection, server shutdown, deadlock, lock timeout, out of resources:
 * roll back and retry). One rule for replay and the copy. Pure.
 */

/** SQLSTATE classes and codes that say nothing about the data. */
const TRANSIENT_CLASSES = ["08", "40", "53", "57", "58", "XX"];
const TRANSIENT_CODES = new Set(["55P03", "55006"]);
/** Errors of our own that are about the data (a change that cannot be applied or decoded). */
const DATA_ERROR_NAMES = new Set(["ApplyError", "RecordTextError"]);

export function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; sqlState?: unknown } | null;
  if (typeof e?.code === "string" && e.code.length === 5) return e.code;
  if (typeof e?.sqlState === "string") return e.sqlState;
  return undefined;
}

export function isTransientError(error: unknown): boolean {
  const code = sqlState(error);
  if (code === undefined) return !(error instanceof Error && DATA_ERROR_NAMES.has(error.name));
  return TRANSIENT_CLASSES.some((c) => code.startsWith(c)) || TRANSIENT_CODES.has(code);
}

export function isDataError(error: unknown): boolean {
  return !isTransientError(error);
}
