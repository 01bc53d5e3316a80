/** Installs or upgrades the PgQ schema from sql/pgq/install.sql (the file psql runs). */
import { packagePath } from "../package-root.ts";
import type { Queryable } from "../db/queryable.ts";
import { runSqlScript } from "../db/sql-script.ts";

export const PGQ_INSTALL_SQL = packagePath("sql", "pgq", "install.sql");

export async function installPgq(db: Queryable): Promise<void> {
  await runSqlScript(db, PGQ_INSTALL_SQL);
}

/** The migration level of the installed PgQ schema, 0 when not installed. */
export async function pgqSchemaVersion(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ installed: boolean }>(
    "select to_regclass('pgq.schema_migration') is not null as installed",
  );
  if (!rows[0]?.installed) return 0;
  const result = await db.query<{ version: number | null }>("select max(version) as version from pgq.schema_migration");
  return result.rows[0]?.version ?? 0;
}

/** The server's version and the installed PgQ API version (null when PgQ is not installed). */
export async function pgVersions(db: Queryable): Promise<{ postgres_version: string; pgq_version: string | null }> {
  const { rows } = await db.query<{ pg: string; pgq: string | null }>(
    `select current_setting('server_version') as pg,
            case when to_regprocedure('pgq.version()') is not null then pgq.version() end as pgq`,
  );
  return { postgres_version: rows[0]!.pg, pgq_version: rows[0]!.pgq };
}
