/**
 * Runs replay's apply step on the subscriber: resolves each change's
 * table, follows the plan (plan.ts) with the statements of statements.ts,
 * checks row counts, keeps the report, and falls back to per-row apply
 * where a grouped statement cannot prove it did the same.
 *
 * Per row, an update or delete must hit exactly one row: none is a missed
 * row (onMissingRow "error" throws ApplyError naming table, operation and
 * key; "log" counts it in the report, lists keys up to MAX_MISSED_LISTED,
 * and goes on); more than one (a subscriber table without a matching key)
 * always throws.
 *
 * Grouped update and delete statements, and whole segments, run in a
 * savepoint and must hit exactly one row per change; they are grouped only
 * when the subscriber table's primary key is exactly the change's key
 * columns, so that a key matches at most one row. Otherwise (a missing
 * row, a key given twice in different spellings, or a data error such as
 * a constraint the subscriber adds) the savepoint is rolled back and the
 * changes are applied in order, a run that fails row by row, which finds
 * and reports missed rows, and raises errors, exactly as per-row apply
 * does. Only data errors (shared/db/failure.ts) with a SQLSTATE are
 * retried that way: a privilege, connection or other transient error
 * propagates. The savepoint of a statement that succeeded is released
 * together with the next one, or at the end.
 */
import type pg from "pg";
import { isDataError, sqlState } from "../../db/failure.ts";
import type { RowChange } from "../change-event.ts";
import { TableShapeCache, type TableShape } from "../table-shape.ts";
import { inOrderRuns, looksForSegment, nextStep, type PlannedTable, segmentTables, type PlanOptions, type SegmentGroup } from "./plan.ts";
import { changeStatement, type GroupedChange, groupedStatement, type Statement, type TableRef } from "./statements.ts";
import { type TableKind, tableKind } from "./table-kind.ts";
import { ApplyError, type ApplyOptions, type ApplyReport, MAX_MISSED_LISTED, type MissedRow, type TableApplyStats } from "./types.ts";

const SAVEPOINT = "londiste_apply";

/** `[schema.]table`, each part a plain identifier or a double-quoted one. */
const IDENT_PART = String.raw`(?:[\p{L}_][\p{L}\p{N}_$]*|"(?:[^"\u0000]|"")+")`;
const TABLE_NAME = new RegExp(`^(?:${IDENT_PART}\\.)?${IDENT_PART}$`, "u");

interface Target extends TableRef {
  stats: TableApplyStats;
}

/** A grouped statement's failure after which its changes are applied row by row, to find and report the cause as per-row apply does. */
export function retriedRowByRow(error: unknown): boolean {
  return sqlState(error) !== undefined && isDataError(error);
}

function keyObject(key: Map<string, string | null>): Record<string, string | null> {
  return Object.fromEntries(key);
}

export class Applier {
  private readonly shapes: TableShapeCache;
  /** Resolved tables, or why one cannot be (raised when a change of it is applied). */
  private readonly targets = new Map<string, Target | ApplyError>();
  /** Tables with their kind, for planning segments. */
  private readonly planned = new Map<string, PlannedTable>();
  private readonly report: ApplyReport = { tables: new Map(), missed: [], missedTotal: 0, changes: 0, statements: 0 };
  private readonly plan: PlanOptions;
  /** The savepoint of the last grouped statement, which succeeded, is still open (released lazily). */
  private savepointOpen = false;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly options: ApplyOptions,
  ) {
    this.shapes = options.shapes ?? new TableShapeCache(client);
    this.plan = { group: options.group ?? true, maxGroupRows: Math.max(1, options.maxGroupRows ?? 1000) };
  }

  async run(changes: RowChange[]): Promise<ApplyReport> {
    try {
      let i = 0;
      while (i < changes.length) {
        if (looksForSegment(changes, i, this.plan)) await this.prepare(segmentTables(changes, i, this.plan));
        const step = nextStep(changes, i, this.plan, (table) => this.planned.get(table));
        if (step.kind === "segment") await this.applySegment(changes, i, step.end, step.groups);
        else await this.applyInOrder(changes, i, step.end);
        i = step.end;
      }
    } catch (error) {
      // Best effort: the caller rolls back anyway (and an aborted transaction refuses this).
      if (this.savepointOpen) await this.client.query(`release savepoint ${SAVEPOINT}`).catch(() => {});
      throw error;
    }
    if (this.savepointOpen) await this.client.query(`release savepoint ${SAVEPOINT}`);
    this.savepointOpen = false;
    return this.report;
  }

  /** Resolves the tables and reads their kinds, for planning; a table that cannot be resolved is left out. */
  private async prepare(tables: string[]): Promise<void> {
    for (const table of tables) {
      if (this.planned.has(table)) continue;
      const t = await this.resolve(table);
      if (t instanceof ApplyError) continue;
      this.planned.set(table, { ref: t, kind: await this.kind(t.shape) });
    }
  }

  /** changes[from, to) in their order: runs grouped where they can be, the rest row by row. */
  private async applyInOrder(changes: RowChange[], from: number, to: number): Promise<void> {
    for (const run of inOrderRuns(changes, from, to, this.plan)) {
      if (run.grouped && (await this.quiet(changes[run.from]!.table))) {
        await this.applyRun(changes.slice(run.from, run.to) as GroupedChange[]);
      } else {
        for (let j = run.from; j < run.to; j++) await this.applyOne(changes[j]!);
      }
    }
  }

  /** Whether the table's kind allows multi-row statements; false also for a table that cannot be resolved. */
  private async quiet(table: string): Promise<boolean> {
    const t = await this.resolve(table);
    return t instanceof ApplyError ? false : (await this.kind(t.shape)).quiet; // the error is raised by the change that has it
  }

  private kind(shape: TableShape): Promise<TableKind> {
    return tableKind(this.client, shape);
  }

  private async target(table: string): Promise<Target> {
    const t = await this.resolve(table);
    if (t instanceof ApplyError) throw t;
    return t;
  }

  private async resolve(table: string): Promise<Target | ApplyError> {
    let t = this.targets.get(table);
    if (!t) {
      t = await this.lookUp(table);
      this.targets.set(table, t);
    }
    return t;
  }

  private async lookUp(table: string): Promise<Target | ApplyError> {
    const dest = this.options.destTable ? this.options.destTable(table) : table;
    const where = dest === table ? table : `${dest} (for provider table ${table})`;
    // to_regclass raises (aborting the transaction) on malformed names: check the syntax first.
    if (!TABLE_NAME.test(dest)) return new ApplyError(`table name ${where} is not a valid [schema.]table name`, table);
    const shape = await this.shapes.get(dest);
    if (!shape) return new ApplyError(`table ${where} does not exist on the subscriber`, table);
    if (shape.relkind !== "r" && shape.relkind !== "p") {
      return new ApplyError(`${where} on the subscriber is not a table (relkind ${shape.relkind})`, table);
    }
    const stats = this.report.tables.get(table) ?? {
      destTable: shape.name,
      inserts: 0,
      updates: 0,
      deletes: 0,
      truncates: 0,
      missedUpdates: 0,
      missedDeletes: 0,
    };
    this.report.tables.set(table, stats);
    return { table, shape, stats };
  }

  private async query(statement: Statement): Promise<pg.QueryResult> {
    this.report.statements++;
    return this.client.query(statement.sql, statement.params);
  }

  private async applyOne(change: RowChange): Promise<void> {
    const t = await this.target(change.table);
    this.report.changes++;
    const statement = changeStatement(t, change);
    const result = await this.query(statement);
    switch (change.op) {
      case "insert":
        t.stats.inserts++;
        return;
      case "update":
      case "delete":
        this.counted(t, change.op, change.key, result.rowCount ?? 0);
        return;
      case "truncate":
        t.stats.truncates++;
        return;
    }
  }

  private counted(t: Target, op: "update" | "delete", key: Map<string, string | null>, rows: number): void {
    if (rows === 1) {
      if (op === "update") t.stats.updates++;
      else t.stats.deletes++;
      return;
    }
    const keyObj = keyObject(key);
    if (rows > 1) {
      throw new ApplyError(`${t.shape.name}: ${op} with key ${JSON.stringify(keyObj)} hit ${rows} rows`, t.table, op, keyObj);
    }
    if (this.options.onMissingRow === "error") {
      throw new ApplyError(`${t.shape.name}: ${op} found no row with key ${JSON.stringify(keyObj)}`, t.table, op, keyObj);
    }
    if (op === "update") t.stats.missedUpdates++;
    else t.stats.missedDeletes++;
    this.report.missedTotal++;
    if (this.report.missed.length < MAX_MISSED_LISTED) {
      const missed: MissedRow = { table: t.table, destTable: t.shape.name, op, key: keyObj };
      this.report.missed.push(missed);
      this.options.log?.(`${op} found no row`, { ...missed });
    }
  }

  private countGrouped(t: Target, run: GroupedChange[]): void {
    this.report.changes += run.length;
    const op = run[0]!.op;
    if (op === "insert") t.stats.inserts += run.length;
    else if (op === "update") t.stats.updates += run.length;
    else t.stats.deletes += run.length;
  }

  /**
   * A run of ≥ 2 inserts (same table and columns), or of ≥ MIN_GUARDED_RUN updates (same table,
   * row and key columns, no key change) or deletes (same table and key columns), no key twice.
   */
  private async applyRun(run: GroupedChange[]): Promise<void> {
    const t = await this.target(run[0]!.table);
    const statement = groupedStatement(t, run);
    if (run[0]!.op === "insert") {
      await this.query(statement!);
      this.countGrouped(t, run);
      return;
    }
    if (statement && (await this.guarded(async () => (await this.query(statement)).rowCount === run.length))) {
      this.countGrouped(t, run);
      return;
    }
    // No provable key, a key missed or was spelled twice, or a data error: find out row by row.
    for (const change of run) await this.applyOne(change);
  }

  /**
   * A segment as one statement per group, in the planned order, in one savepoint. Each statement
   * must hit exactly one row per change; otherwise the segment is rolled back and applied in order.
   */
  private async applySegment(changes: RowChange[], from: number, to: number, groups: SegmentGroup[]): Promise<void> {
    const statements: Array<{ t: Target; run: GroupedChange[]; statement: Statement }> = [];
    for (const { changes: run } of groups) {
      const t = await this.target(run[0]!.table);
      statements.push({ t, run, statement: groupedStatement(t, run)! });
    }
    const ok = await this.guarded(async () => {
      for (const st of statements) {
        if ((await this.query(st.statement)).rowCount !== st.run.length) return false;
      }
      return true;
    });
    if (!ok) {
      await this.applyInOrder(changes, from, to);
      return;
    }
    for (const { t, run } of statements) this.countGrouped(t, run);
  }

  /**
   * Runs `work` (grouped statements) inside a savepoint; true when it says every statement hit
   * exactly its rows. Otherwise, or on an error that in-order apply would meet or explain, the
   * savepoint is rolled back and false returned. A savepoint that was kept is released together
   * with the next one, or at the end.
   */
  private async guarded(work: () => Promise<boolean>): Promise<boolean> {
    await this.client.query(this.savepointOpen ? `release savepoint ${SAVEPOINT}; savepoint ${SAVEPOINT}` : `savepoint ${SAVEPOINT}`);
    this.savepointOpen = true;
    let ok: boolean;
    try {
      ok = await work();
    } catch (error) {
      if (!retriedRowByRow(error)) throw error;
      await this.rollbackToSavepoint(error);
      return false;
    }
    if (ok) return true;
    await this.rollbackToSavepoint();
    return false;
  }

  private async rollbackToSavepoint(cause?: unknown): Promise<void> {
    this.savepointOpen = false;
    try {
      await this.client.query(`rollback to savepoint ${SAVEPOINT}; release savepoint ${SAVEPOINT}`);
    } catch (error) {
      throw cause ?? error;
    }
  }
}

/** Checks the caller's transaction is there (a savepoint is refused outside one, where SET LOCAL would silently do nothing), then pins the settings. */
export async function enterApply(client: pg.ClientBase, settingsSql: string): Promise<void> {
  await client.query(`savepoint ${SAVEPOINT}; release savepoint ${SAVEPOINT}; ${settingsSql}`);
}
