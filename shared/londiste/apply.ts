/**
 * Replay's apply step: decoded row changes (change-event.ts) written to
 * the subscriber's tables.
 *
 *   await client.query("begin");
 *   const report = await applyChanges(client, changes, { onMissingRow: "error" });
 *   await setLastTick(client, ...);   // same transaction (spec §5.3 rule 1)
 *   await client.query("commit");
 *
 * applyChanges never begins, commits or rolls back the caller's transaction
 * (it refuses to run outside one). In it, it pins with SET LOCAL the
 * settings the capture side writes values under (DateStyle ISO,
 * IntervalStyle postgres, TimeZone UTC, extra_float_digits 3, lc_monetary
 * C), so the applier session's own settings do not matter, and
 * session_replication_role = replica, so ordinary user triggers, rules and
 * foreign-key triggers on subscriber tables do not fire (setting it needs
 * superuser). These stay in force until the caller's transaction ends.
 *
 * Per change, in order:
 * - the table is the provider's `schema.table` (londiste.quote_table form),
 *   optionally mapped by `destTable`, and resolved with to_regclass; SQL only
 *   ever contains the catalog's own quoted name and quoted column names;
 *   values travel as text parameters cast to the subscriber column's type
 *   (without typmod; the typmod then applies on assignment, as on the provider);
 * - generated subscriber columns are skipped (the subscriber computes them);
 *   a provider column missing on the subscriber is an error; extra subscriber
 *   columns get their defaults;
 * - insert → `insert into T (...) overriding system value values (...)`: an
 *   existing key fails with the database's own error (unique_violation);
 * - update → `update only T set <all row columns> where <old key>`;
 * - delete → `delete from only T where <key>`;
 * - an update/delete that hits no row: onMissingRow "error" throws
 *   ApplyError naming table, operation and key; "log" counts it in the
 *   report (keys listed up to MAX_MISSED_LISTED) and goes on. One that hits
 *   more than one row (subscriber table without a matching key) always throws;
 * - truncate → `truncate only T` (no cascade).
 *
 * Grouping (default on): a run of consecutive inserts into one table with the
 * same column list becomes one `insert ... select ... from unnest(...)`; a run
 * of consecutive deletes from one table becomes one `delete ... using unnest(...)`
 * inside a savepoint whose row count must equal the number of keys, otherwise
 * it is rolled back and the run is applied row by row (which finds the missed
 * keys). Changes are never reordered; updates and truncates always go row by
 * row. Per-row apply (`group: false`) is the reference behaviour.
 */
import type pg from "pg";
import { TableShapeCache, type ColumnShape, type TableShape } from "./table-shape.ts";
import type { RowChange } from "./change-event.ts";

export type ChangeOp = RowChange["op"];

export interface TableApplyStats {
  /** The subscriber table written, canonical quoted name. */
  destTable: string;
  inserts: number;
  updates: number;
  deletes: number;
  truncates: number;
  /** Updates that found no row (onMissingRow "log"). */
  missedUpdates: number;
  /** Deletes that found no row (onMissingRow "log"). */
  missedDeletes: number;
}

export interface MissedRow {
  /** Provider table name, as in the change. */
  table: string;
  destTable: string;
  op: "update" | "delete";
  key: Record<string, string | null>;
}

export interface ApplyReport {
  /** Per provider table, in order of first appearance. */
  tables: Map<string, TableApplyStats>;
  /** Missed rows, the first MAX_MISSED_LISTED only. */
  missed: MissedRow[];
  /** All missed rows, also those not listed. */
  missedTotal: number;
  /** Row changes applied (missed ones included). */
  changes: number;
  /** Data statements sent (grouping makes this smaller than `changes`). */
  statements: number;
}

export interface ApplyOptions {
  /** Maps a provider table name to the subscriber's (quoted `schema.table`); default: the same name. */
  destTable?: (providerTable: string) => string;
  /** What an update or delete that hits no row does. */
  onMissingRow: "error" | "log";
  /** Told about each listed missed row in "log" mode. */
  log?: (msg: string, details: Record<string, unknown>) => void;
  /** Multi-row statements for runs of inserts/deletes (default true); false = per-row reference behaviour. */
  group?: boolean;
  /** Largest run put into one statement (default 1000). */
  maxGroupRows?: number;
  /** Shapes already read in this same transaction (e.g. by an earlier call); default: a fresh cache. */
  shapes?: TableShapeCache;
}

export const MAX_MISSED_LISTED = 100;

/** The settings the capture side writes values under, plus replica mode. */
export const APPLY_SETTINGS_SQL =
  "set local datestyle = 'ISO, YMD'; set local intervalstyle = 'postgres'; set local timezone = 'UTC'; " +
  "set local extra_float_digits = 3; set local lc_monetary = 'C'; set local session_replication_role = 'replica'";

export class ApplyError extends Error {
  constructor(
    message: string,
    readonly table: string,
    readonly op?: ChangeOp,
    readonly key?: Record<string, string | null>,
    readonly column?: string,
  ) {
    super(message);
    this.name = "ApplyError";
  }
}

const SAVEPOINT = "londiste_apply";

/** `[schema.]table`, each part a plain identifier or a double-quoted one. */
const IDENT_PART = String.raw`(?:[\p{L}_][\p{L}\p{N}_$]*|"(?:[^"\u0000]|"")+")`;
const TABLE_NAME = new RegExp(`^(?:${IDENT_PART}\\.)?${IDENT_PART}$`, "u");

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function keyObject(key: Map<string, string | null>): Record<string, string | null> {
  return Object.fromEntries(key);
}

interface Target {
  table: string;
  shape: TableShape;
  stats: TableApplyStats;
}

export async function applyChanges(client: pg.ClientBase, changes: RowChange[], options: ApplyOptions): Promise<ApplyReport> {
  // A savepoint is refused outside a transaction block, where SET LOCAL would silently do nothing.
  await client.query(`savepoint ${SAVEPOINT}`);
  await client.query(`release savepoint ${SAVEPOINT}; ${APPLY_SETTINGS_SQL}`);
  return new Applier(client, options).run(changes);
}

class Applier {
  private readonly shapes: TableShapeCache;
  private readonly targets = new Map<string, Target>();
  private readonly report: ApplyReport = { tables: new Map(), missed: [], missedTotal: 0, changes: 0, statements: 0 };
  private readonly group: boolean;
  private readonly maxGroupRows: number;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly options: ApplyOptions,
  ) {
    this.shapes = options.shapes ?? new TableShapeCache(client);
    this.group = options.group ?? true;
    this.maxGroupRows = Math.max(1, options.maxGroupRows ?? 1000);
  }

  async run(changes: RowChange[]): Promise<ApplyReport> {
    let i = 0;
    while (i < changes.length) {
      const first = changes[i]!;
      let end = i + 1;
      if (this.group && (first.op === "insert" || first.op === "delete")) {
        const sig = signature(first);
        while (end < changes.length && end - i < this.maxGroupRows && signature(changes[end]!) === sig) end++;
      }
      if (end - i > 1) {
        await this.applyRun(changes.slice(i, end) as Array<Extract<RowChange, { op: "insert" | "delete" }>>);
      } else {
        await this.applyOne(first);
      }
      i = end;
    }
    return this.report;
  }

  private async target(table: string): Promise<Target> {
    let t = this.targets.get(table);
    if (!t) {
      const dest = this.options.destTable ? this.options.destTable(table) : table;
      const where = dest === table ? table : `${dest} (for provider table ${table})`;
      // to_regclass raises (aborting the transaction) on malformed names: check the syntax first.
      if (!TABLE_NAME.test(dest)) throw new ApplyError(`table name ${where} is not a valid [schema.]table name`, table);
      const shape = await this.shapes.get(dest);
      if (!shape) throw new ApplyError(`table ${where} does not exist on the subscriber`, table);
      if (shape.relkind !== "r" && shape.relkind !== "p") {
        throw new ApplyError(`${where} on the subscriber is not a table (relkind ${shape.relkind})`, table);
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
      t = { table, shape, stats };
      this.targets.set(table, t);
    }
    return t;
  }

  private column(t: Target, name: string): ColumnShape {
    const col = t.shape.columns.get(name);
    if (!col) {
      throw new ApplyError(`${t.shape.name}: column ${ident(name)} does not exist on dest side`, t.table, undefined, undefined, name);
    }
    return col;
  }

  /** Row columns that are written: all must exist, generated ones are skipped. */
  private writable(t: Target, row: Map<string, string | null>): Array<[ColumnShape, string | null]> {
    const out: Array<[ColumnShape, string | null]> = [];
    for (const [name, value] of row) {
      const col = this.column(t, name);
      if (!col.generated) out.push([col, value]);
    }
    return out;
  }

  private keyColumns(t: Target, key: Map<string, string | null>): Array<[ColumnShape, string | null]> {
    if (key.size === 0) throw new ApplyError(`${t.shape.name}: change without key columns`, t.table);
    return [...key].map(([name, value]) => [this.column(t, name), value]);
  }

  private async query(sql: string, params: unknown[]): Promise<pg.QueryResult> {
    this.report.statements++;
    return this.client.query(sql, params);
  }

  private insertHead(t: Target, cols: ColumnShape[]): string {
    const overriding = cols.some((c) => c.identityAlways) ? " overriding system value" : "";
    return `insert into ${t.shape.name} (${cols.map((c) => ident(c.name)).join(", ")})${overriding}`;
  }

  async applyOne(change: RowChange): Promise<void> {
    const t = await this.target(change.table);
    this.report.changes++;
    switch (change.op) {
      case "insert": {
        const entries = this.writable(t, change.row);
        const cols = entries.map(([c]) => c);
        await this.query(
          `${this.insertHead(t, cols)} values (${cols.map((c, i) => `$${i + 1}::${c.castType}`).join(", ")})`,
          entries.map(([, v]) => v),
        );
        t.stats.inserts++;
        return;
      }
      case "update": {
        const sets = this.writable(t, change.row);
        const keys = this.keyColumns(t, change.key);
        if (sets.length === 0) throw new ApplyError(`${t.shape.name}: update without writable columns`, t.table, "update");
        const result = await this.query(
          `update only ${t.shape.name} set ${sets.map(([c], i) => `${ident(c.name)} = $${i + 1}::${c.castType}`).join(", ")} where ` +
            keys.map(([c], i) => `${ident(c.name)} = $${sets.length + i + 1}::${c.castType}`).join(" and "),
          [...sets.map(([, v]) => v), ...keys.map(([, v]) => v)],
        );
        this.counted(t, "update", change.key, result.rowCount ?? 0);
        return;
      }
      case "delete": {
        const keys = this.keyColumns(t, change.key);
        const result = await this.query(
          `delete from only ${t.shape.name} where ${keys.map(([c], i) => `${ident(c.name)} = $${i + 1}::${c.castType}`).join(" and ")}`,
          keys.map(([, v]) => v),
        );
        this.counted(t, "delete", change.key, result.rowCount ?? 0);
        return;
      }
      case "truncate":
        await this.query(`truncate only ${t.shape.name}`, []);
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

  /** A run of ≥ 2 inserts (same table and columns) or deletes (same table and key columns). */
  private async applyRun(run: Array<Extract<RowChange, { op: "insert" | "delete" }>>): Promise<void> {
    const first = run[0]!;
    const t = await this.target(first.table);
    if (first.op === "insert") {
      const cols = this.writable(t, first.row).map(([c]) => c);
      const arrays = cols.map((c) => run.map((ch) => (ch.op === "insert" ? (ch.row.get(c.name) ?? null) : null)));
      await this.query(
        `${this.insertHead(t, cols)} select ${cols.map((c, i) => `u.c${i + 1}::${c.castType}`).join(", ")} ` +
          `from unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}) as u(${cols.map((_, i) => `c${i + 1}`).join(", ")})`,
        arrays,
      );
      this.report.changes += run.length;
      t.stats.inserts += run.length;
      return;
    }
    const keys = this.keyColumns(t, first.key).map(([c]) => c);
    const arrays = keys.map((c) => run.map((ch) => (ch.op === "delete" ? (ch.key.get(c.name) ?? null) : null)));
    await this.client.query(`savepoint ${SAVEPOINT}`);
    const result = await this.query(
      `delete from only ${t.shape.name} as t using unnest(${keys.map((_, i) => `$${i + 1}::text[]`).join(", ")}) ` +
        `as u(${keys.map((_, i) => `k${i + 1}`).join(", ")}) where ` +
        keys.map((c, i) => `t.${ident(c.name)} = u.k${i + 1}::${c.castType}`).join(" and "),
      arrays,
    );
    if (result.rowCount === run.length) {
      await this.client.query(`release savepoint ${SAVEPOINT}`);
      this.report.changes += run.length;
      t.stats.deletes += run.length;
      return;
    }
    // Some key missed (or was repeated, or hit several rows): undo and find out row by row.
    await this.client.query(`rollback to savepoint ${SAVEPOINT}; release savepoint ${SAVEPOINT}`);
    for (const change of run) await this.applyOne(change);
  }
}

/** Changes with equal signatures can share one multi-row statement. */
function signature(change: RowChange): string {
  switch (change.op) {
    case "insert":
      return `I\u0000${change.table}\u0000${[...change.row.keys()].join("\u0000")}`;
    case "delete":
      return `D\u0000${change.table}\u0000${[...change.key.keys()].join("\u0000")}`;
    default:
      return change.op; // never grouped
  }
}
