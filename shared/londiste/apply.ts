/**
 * Replay's apply step: decoded row changes (change-event.ts) written to
 * the subscriber's tables.
 *
 *   await client.query("begin");
 *   const report = await applyChanges(client, changes, { onMissingRow: "error" });
 *   await recordTick(client, ...);   // same transaction: the rows and the position commit together
 *   await client.query("commit");
 *
 * applyChanges never begins, commits or rolls back the caller's transaction
 * (it refuses to run outside one). In it, it pins with SET LOCAL the
 * value-text settings (shared/db/value-text.ts: the ones the capture side
 * writes values under, and array_nulls on, as grouped statements pass
 * values as text[] parameters), so the applier session's own settings do
 * not matter, and session_replication_role = replica, so ordinary user
 * triggers, rules and foreign-key triggers on subscriber tables do not
 * fire (setting it needs a superuser, or on PostgreSQL 15 and later
 * `GRANT SET ON PARAMETER`, as sql/londiste/roles.sql gives replay), and
 * nested-loop joins for the grouped statements (APPLY_PLAN_SQL). These stay
 * in force until the caller's transaction ends.
 *
 * Each change's table is the provider's `schema.table` (londiste.quote_table
 * form), optionally mapped by `destTable`, and resolved with to_regclass.
 * The parts:
 * - apply/statements.ts: the SQL per change and per run (pure);
 * - apply/plan.ts: which changes share a statement, runs and reordered
 *   segments (pure);
 * - apply/table-kind.ts: what the catalog says grouping may do with a table;
 * - apply/executor.ts: runs it all, checks row counts, falls back to
 *   per-row apply, keeps the report.
 * Grouping (default on) gives the same table, report and errors as per-row
 * apply (`group: false`, the reference behaviour) with fewer statements.
 */
import type pg from "pg";
import { setStatements, VALUE_TEXT_SETTINGS } from "../db/value-text.ts";
import type { RowChange } from "./change-event.ts";
import { Applier, enterApply } from "./apply/executor.ts";
import type { ApplyOptions, ApplyReport } from "./apply/types.ts";

export { MIN_GUARDED_RUN, MIN_SEGMENT } from "./apply/plan.ts";
export {
  ApplyError,
  type ApplyOptions,
  type ApplyReport,
  type ChangeOp,
  MAX_MISSED_LISTED,
  type MissedRow,
  type TableApplyStats,
} from "./apply/types.ts";

/** The value-text settings, plus replica mode, for the rest of the caller's transaction. */
export const APPLY_SETTINGS_SQL = `${setStatements(VALUE_TEXT_SETTINGS, "local")}; set local session_replication_role = 'replica'`;

/**
 * A grouped update or delete joins up to a thousand keys to the table by
 * its primary key. The planner, counting random page reads, prefers to hash
 * or sort the whole table for that (a sequential scan per statement: 100k
 * rows read for 1000 changed, and worse the bigger the table); probing the
 * primary key per change is what the work needs, so the apply transaction
 * plans joins as nested loops.
 */
export const APPLY_PLAN_SQL = "set local enable_hashjoin = off; set local enable_mergejoin = off";

export async function applyChanges(client: pg.ClientBase, changes: RowChange[], options: ApplyOptions): Promise<ApplyReport> {
  await enterApply(client, `${APPLY_SETTINGS_SQL}; ${APPLY_PLAN_SQL}`);
  return new Applier(client, options).run(changes);
}
