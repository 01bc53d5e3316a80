/** Installs or upgrades the londiste schema from sql/londiste/install.sql (the file psql runs). */
import { packagePath } from "../package-root.ts";
import type { Queryable } from "../db/queryable.ts";
import { runSqlScript } from "../db/sql-script.ts";

export const LONDISTE_INSTALL_SQL = packagePath("sql", "londiste", "install.sql");

/** The migration level this code expects (the highest in sql/londiste/structure/). */
export const LONDISTE_SCHEMA_VERSION = 8;

export async function installLondiste(db: Queryable): Promise<void> {
  await runSqlScript(db, LONDISTE_INSTALL_SQL);
}

/** The migration level of the installed londiste schema, 0 when not installed. */
export async function londisteSchemaVersion(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ installed: boolean }>("select to_regclass('londiste.schema_migration') is not null as installed");
  if (!rows[0]?.installed) return 0;
  const result = await db.query<{ version: number | null }>("select max(version) as version from londiste.schema_migration");
  return result.rows[0]?.version ?? 0;
}
