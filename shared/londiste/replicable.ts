/**
 * Which relations `provider add`, `subscriber add` (and their -seq
 * variants) refuse whatever the table looks like: the project's own
 * schemas (replicating pgq.tick or londiste.subscriber_table would have
 * the job truncate and rewrite its own state), the system catalogs, and
 * temporary tables (they live only in the session that made them).
 * `notReplicableReason` is pure; `checkReplicable` reads the catalog.
 */
import type { Queryable } from "../db/queryable.ts";

/** The schemas this project installs into a database (sql/pgq/, sql/londiste/). */
export const PROJECT_SCHEMAS: Readonly<Record<string, string>> = { pgq: "PgQ", londiste: "londiste" };

export interface RelationPlace {
  /** Schema of the (canonical) name, whether or not the relation exists. */
  schema: string;
  /** pg_class.relpersistence of the relation, null when there is none. */
  persistence: string | null;
}

/** Why this relation is never replicated, or undefined when it may be. */
export function notReplicableReason(place: RelationPlace): string | undefined {
  const owner = Object.hasOwn(PROJECT_SCHEMAS, place.schema) ? PROJECT_SCHEMAS[place.schema] : undefined;
  if (owner !== undefined) return `refused: schema ${place.schema} belongs to ${owner} itself, whose tables are never replicated`;
  if (place.schema === "information_schema" || place.schema.startsWith("pg_")) {
    if (place.schema.startsWith("pg_temp") || place.persistence === "t") return "refused: a temporary table lives only in the session that made it and cannot be replicated";
    return `refused: ${place.schema} is a system schema, whose tables are never replicated`;
  }
  if (place.persistence === "t") return "refused: a temporary table lives only in the session that made it and cannot be replicated";
  return undefined;
}

/** The reason `name` (canonical `schema.table` form) is never replicated on this database, if any. */
export async function checkReplicable(db: Queryable, name: string): Promise<string | undefined> {
  const { rows } = await db.query<{ schema: string; persistence: string | null }>(
    `select (pg_catalog.parse_ident($1))[1] as schema,
            (select c.relpersistence::text from pg_catalog.pg_class c where c.oid = pg_catalog.to_regclass($1)) as persistence`,
    [name],
  );
  return rows[0] ? notReplicableReason(rows[0]) : undefined;
}
