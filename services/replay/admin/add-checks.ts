/**
 * The checks `subscriber add` and `subscriber add-seq` make beyond the
 * table structure (table-check.ts): the row counts behind an
 * `--expect-sync` claim, what kind of relation a name is, and hints
 * appended once.
 */
import type pg from "pg";
import { ownRows } from "../../../shared/db/sql-text.ts";
import type { TableShape } from "../../../shared/londiste/table-shape.ts";

export const FORCE_HINT = "(--force adds it anyway)";

/** A message with a hint appended, unless it says the hint already. */
export function withHint(message: string, hint: string): string {
  return message.includes(hint) ? message : `${message} ${hint}`;
}

/**
 * The least check of an `--expect-sync` claim: both tables have as many
 * rows. Skipped with --force. Returns what was checked (for the reply), or
 * why the claim is refused.
 */
export async function checkExpectSync(provider: pg.Pool, sub: pg.Pool, p: TableShape, s: TableShape, force: boolean) {
  if (force) return { ok: true, message: "--expect-sync taken on trust: --force skips the row count check" };
  const count = async (db: pg.Pool, t: TableShape) =>
    Number((await db.query<{ n: string }>(`select pg_catalog.count(*) as n from ${ownRows(t.name, t.relkind)}`)).rows[0]!.n);
  const [np, ns] = await Promise.all([count(provider, p), count(sub, s)]);
  if (np !== ns) {
    return {
      ok: false,
      message:
        `--expect-sync: the provider has ${np} rows, the subscriber ${ns}: the tables are not in sync ` +
        `(add it without --expect-sync to copy it, or with --force to take the claim on trust)`,
    };
  }
  return { ok: true, message: `checked: both sides have ${np} rows; contents not compared ("londiste CONFIG compare" does)` };
}

/** "table", "sequence", "view", ... for a name on a database; null when there is none. */
export async function relationKind(db: pg.Pool, name: string): Promise<string | null> {
  const { rows } = await db.query<{ kind: string | null }>(
    `select case c.relkind when 'r' then 'table' when 'p' then 'table' when 'S' then 'sequence' when 'v' then 'view'
                           when 'm' then 'materialized view' when 'f' then 'foreign table' else 'relation' end as kind
       from pg_class c where c.oid = to_regclass($1)`,
    [name],
  );
  return rows[0]?.kind ?? null;
}
