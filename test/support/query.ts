/** One-value reads for tests: the first column of the first row. */
import type { Queryable } from "../../shared/db/queryable.ts";

/** First column of the first row (int8 comes back as a string, as pg sends it). */
export async function value<T = unknown>(db: Queryable, sql: string, params: unknown[] = []): Promise<T> {
  const { rows, fields } = await db.query(sql, params);
  if (rows.length === 0) throw new Error(`no row from: ${sql}`);
  return (rows[0] as Record<string, T>)[fields[0]!.name]!;
}

/** First column of the first row as a number (int8 arrives as text), or null. */
export async function num(db: Queryable, sql: string, params: unknown[] = []): Promise<number | null> {
  const v = await value<string | number | null>(db, sql, params);
  return v === null ? null : Number(v);
}
