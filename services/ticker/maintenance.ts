/**
 * PgQ maintenance, as pgqadm runs it: per queue, rotation step 1 and then
 * step 2 in its own transaction; the retry mover until nothing is due; a
 * VACUUM of the small PgQ tables. Each step commits on its own
 * (autocommit), so a failure leaves every earlier step done.
 */
import type { Queryable } from "../../shared/db/queryable.ts";
import { qualifiedName } from "../../shared/db/sql-text.ts";

export interface MaintenanceReport {
  rotated: string[];
  retriesMoved: number;
  vacuumed: string[];
}

export async function runMaintenance(db: Queryable): Promise<MaintenanceReport> {
  const report: MaintenanceReport = { rotated: [], retriesMoved: 0, vacuumed: [] };

  const queues = await db.query<{ queue_name: string }>("select queue_name from pgq.queue order by queue_id");
  for (const { queue_name } of queues.rows) {
    let rotated: number;
    try {
      const { rows } = await db.query<{ rotated: number }>("select pgq.maint_rotate_tables_step1($1) as rotated", [queue_name]);
      rotated = rows[0]!.rotated;
    } catch (error) {
      // A queue dropped or renamed since the list was read ("No such event queue") is not an error.
      const gone = await db.query("select 1 from pgq.queue where queue_name = $1", [queue_name]);
      if (gone.rowCount === 0) continue;
      throw error;
    }
    if (rotated === 1) report.rotated.push(queue_name);
  }
  // Step 2 must see step 1 committed: it is a separate autocommit statement.
  await db.query("select pgq.maint_rotate_tables_step2()");

  for (;;) {
    const { rows } = await db.query<{ moved: number }>("select pgq.maint_retry_events() as moved");
    const moved = rows[0]!.moved;
    report.retriesMoved += moved;
    if (moved === 0) break;
  }

  const tables = await db.query<{ t: string }>("select t from pgq.maint_tables_to_vacuum() t");
  for (const { t } of tables.rows) {
    const [schema, table] = t.split(".");
    await db.query(`vacuum ${qualifiedName(schema!, table!)}`);
    report.vacuumed.push(t);
  }
  return report;
}
