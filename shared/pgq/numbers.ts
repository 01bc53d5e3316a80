/**
 * int8 values arrive from pg as strings. Event ids, txids, tick and batch
 * ids stay far below 2^53 in practice; a value that does not fit is an
 * error rather than a silently rounded id.
 */
export function toSafeInt(value: string | number): number {
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`integer ${value} does not fit a JavaScript number`);
  return n;
}

export function toSafeIntOrNull(value: string | number | null): number | null {
  return value === null ? null : toSafeInt(value);
}

export function toFloatOrNull(value: string | number | null): number | null {
  return value === null ? null : Number(value);
}
