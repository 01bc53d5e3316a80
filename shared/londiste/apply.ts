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
 * C), and array_nulls on (grouped statements pass values as text[]
 * parameters, whose NULL elements it reads), so the applier session's own
 * settings do not matter, and
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
 * - update → `update only T set <all row columns> where <old key>`; a GENERATED ALWAYS
 *   identity column cannot be assigned, so it is matched instead (`is not distinct from` the
 *   new value): an update that would change it counts as a missed row;
 * - delete → `delete from only T where <key>`;
 * - an update/delete that hits no row: onMissingRow "error" throws
 *   ApplyError naming table, operation and key; "log" counts it in the
 *   report (keys listed up to MAX_MISSED_LISTED) and goes on. One that hits
 *   more than one row (subscriber table without a matching key) always throws;
 * - truncate → `truncate only T` (no cascade).
 * (`only` keeps inheriting tables out; a partitioned table is written
 * without it, which is the only way to reach its partitions.)
 *
 * Grouping (default on) gives the same table, report and errors as per-row
 * apply (`group: false`, the reference behaviour) with fewer statements.
 * Tables with a trigger or rule that fires in replica mode (ENABLE ALWAYS /
 * REPLICA) are always written row by row. For the others:
 * - Runs, in order: a run of consecutive inserts into one table with the
 *   same column list becomes one `insert ... select ... from unnest(...)`;
 *   of deletes from one table with the same key columns, one
 *   `delete ... using unnest(...)`; of updates of one table with the same
 *   row and key columns, none changing its key (the key columns' text in
 *   the row equal to the old key), one
 *   `update ... set ... from unnest(...) where T.key = u.key`. A key never
 *   appears twice in a run.
 * - Segments, reordered: where a table "commutes" — a plain table whose only
 *   unique index or exclusion constraint is its primary key, on columns
 *   whose text is one spelling per value (integers, text types with a
 *   deterministic collation, uuid, bool, date, timestamps, bytea, enums) —
 *   a stretch of inserts, updates without key change and deletes of such
 *   tables is laid out in layers — a row's (table and primary key value)
 *   k-th change in the stretch goes to layer k — and applied layer by
 *   layer, one statement per kind and column list: deletes, updates,
 *   inserts (a table's inserts in a segment share one column list, and
 *   stay in their order across layers when a column has a default or is an
 *   identity, which a sequence may fill). In a layer each change touches a row no
 *   other change touches, and no trigger, rule, foreign key (replica mode)
 *   or other unique index ties rows together, so each change meets the same
 *   row state as in per-row order and the result is the same (a CHECK
 *   constraint or default whose function reads other rows would be a tie
 *   too; PostgreSQL does not support those). This is what makes an
 *   interleaved mix of inserts, updates and deletes fast.
 * Update and delete statements, and whole segments, run in a savepoint and
 * must hit exactly one row per change; they are grouped only when the
 * subscriber table's primary key is exactly the change's key columns, so
 * that a key matches at most one row. Otherwise (a missing row, a key
 * given twice in different spellings, or a data error such as a
 * constraint the subscriber adds) the savepoint is rolled back and the
 * changes are applied in order, a run that fails row by row, which finds
 * and reports missed rows, and raises errors, exactly as per-row apply
 * does. Key changes and truncates always go row by row. Runs and segments
 * hold at most maxGroupRows changes; short ones (under MIN_GUARDED_RUN /
 * MIN_SEGMENT) go row by row, as the savepoint costs a round trip. The
 * savepoint of a statement that succeeded is released together with the
 * next one, or at the end.
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
  /** Multi-row statements for runs of inserts, updates and deletes (default true); false = per-row reference behaviour. */
  group?: boolean;
  /** Most changes in one run or segment (default 1000). */
  maxGroupRows?: number;
  /** Shapes already read in this same transaction (e.g. by an earlier call); default: a fresh cache. */
  shapes?: TableShapeCache;
}

export const MAX_MISSED_LISTED = 100;

/** The settings the capture side writes values under, plus replica mode. */
export const APPLY_SETTINGS_SQL =
  "set local datestyle = 'ISO, YMD'; set local intervalstyle = 'postgres'; set local timezone = 'UTC'; " +
  "set local extra_float_digits = 3; set local lc_monetary = 'C'; set local array_nulls = on; " +
  "set local session_replication_role = 'replica'";

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
  // A savepoint is refused outside a transaction block (also in the implicit block of this
  // multi-statement query), where SET LOCAL would silently do nothing.
  await client.query(`savepoint ${SAVEPOINT}; release savepoint ${SAVEPOINT}; ${APPLY_SETTINGS_SQL}`);
  return new Applier(client, options).run(changes);
}

/** Update and delete runs shorter than this go row by row: the savepoint costs a round trip. */
export const MIN_GUARDED_RUN = 3;
/** Segments (see the top) shorter than this are applied in order. */
export const MIN_SEGMENT = 4;

type GroupedChange = Extract<RowChange, { op: "insert" | "update" | "delete" }>;

/**
 * Errors of a grouped statement after which the run is retried row by row:
 * all but connection, transaction-state, serialization/deadlock, resource,
 * operator-intervention (cancel, shutdown), system and internal errors.
 */
const NOT_RETRIED_CLASSES = new Set(["08", "25", "40", "53", "57", "58", "XX"]);

function retriedRowByRow(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.length === 5 && !NOT_RETRIED_CLASSES.has(code.slice(0, 2));
}

class Applier {
  private readonly shapes: TableShapeCache;
  private readonly targets = new Map<string, Target>();
  private readonly report: ApplyReport = { tables: new Map(), missed: [], missedTotal: 0, changes: 0, statements: 0 };
  private readonly group: boolean;
  private readonly maxGroupRows: number;
  /** The savepoint of the last grouped statement, which succeeded, is still open (released lazily). */
  private savepointOpen = false;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly options: ApplyOptions,
  ) {
    this.shapes = options.shapes ?? new TableShapeCache(client);
    this.group = options.group ?? true;
    this.maxGroupRows = Math.max(1, options.maxGroupRows ?? 1000);
  }

  async run(changes: RowChange[]): Promise<ApplyReport> {
    try {
      let i = 0;
      while (i < changes.length) {
        const segment = this.group && changes.length - i >= MIN_SEGMENT ? await this.segment(changes, i) : null;
        if (segment && segment.end - i >= MIN_SEGMENT && segment.groups.size + 1 < segment.end - i) {
          await this.applySegment(changes, i, segment);
          i = segment.end;
        } else {
          // In order, as runs: up to the segment's end when there was one, else one run.
          const stop = segment && segment.end > i ? segment.end : this.runEnd(changes, i, changes.length);
          await this.applyInOrder(changes, i, stop);
          i = stop;
        }
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

  /** changes[from, to) in their order: runs grouped where they can be, the rest row by row. */
  private async applyInOrder(changes: RowChange[], from: number, to: number): Promise<void> {
    let i = from;
    while (i < to) {
      const end = this.runEnd(changes, i, to);
      const first = changes[i]!;
      const length = end - i;
      if (length > 1 && (first.op === "insert" || length >= MIN_GUARDED_RUN) && (await this.quiet(first.table))) {
        await this.applyRun(changes.slice(i, end) as GroupedChange[]);
      } else {
        for (let j = i; j < end; j++) await this.applyOne(changes[j]!);
      }
      i = end;
    }
  }

  /** Whether the table's kind allows multi-row statements; false also for a table that cannot be resolved. */
  private async quiet(table: string): Promise<boolean> {
    try {
      return (await this.tableKind(await this.target(table))).quiet;
    } catch {
      return false; // the error is raised row by row, by the change that has it
    }
  }

  /** End (exclusive, at most `limit`) of the run of changes that can share one statement with changes[i]. */
  private runEnd(changes: RowChange[], i: number, limit: number): number {
    const first = changes[i]!;
    const sig = this.group ? signature(first) : null;
    if (sig === null) return i + 1;
    // Update and delete runs hold each key once.
    const keys = first.op === "insert" ? null : new Set([keyText(first)]);
    let end = i + 1;
    while (end < limit && end - i < this.maxGroupRows) {
      const change = changes[end]!;
      if (signature(change) !== sig) break;
      if (keys) {
        const k = keyText(change);
        if (keys.has(k)) break;
        keys.add(k);
      }
      end++;
    }
    return end;
  }

  /**
   * The segment starting at changes[i]: the longest stretch (at most maxGroupRows) of inserts,
   * updates without key change and deletes of tables whose changes commute, laid out in layers:
   * a row's (subscriber table and primary key value) k-th change in the segment goes to layer k,
   * so a layer holds each row at most once. A table's inserts share one column list and, when
   * the table has defaults (insertOrder), stay in their order: an insert may not go to a lower
   * layer than an earlier insert into its table. end === i: changes[i] cannot start one.
   */
  private async segment(changes: RowChange[], i: number): Promise<Segment> {
    const layerOf = new Map<string, number>();
    const inserts = new Map<number, { sig: string; layer: number }>();
    const groups = new Map<string, SegmentGroup>();
    let j = i;
    for (; j < changes.length && j - i < this.maxGroupRows; j++) {
      const change = changes[j]!;
      const sig = signature(change);
      if (sig === null || change.op === "truncate") break;
      let t: Target;
      try {
        t = await this.target(change.table);
      } catch {
        break; // reported when the change is applied in order
      }
      const kind = await this.tableKind(t);
      if (!kind.commutes) break;
      const pk = t.shape.primaryKey;
      let values: Array<string | null>;
      if (change.op === "insert") {
        if (!pk.every((k) => change.row.has(k))) break;
        values = pk.map((k) => change.row.get(k)!);
      } else {
        if (change.key.size !== pk.length || !pk.every((k) => change.key.has(k))) break;
        values = pk.map((k) => change.key.get(k)!);
      }
      const rowId = JSON.stringify([t.shape.oid, values]);
      const layer = (layerOf.get(rowId) ?? 0) + 1;
      if (change.op === "insert") {
        const earlier = inserts.get(t.shape.oid);
        if (earlier && (earlier.sig !== sig || (kind.insertOrder && earlier.layer > layer))) break;
      }
      try {
        // Column errors are raised in order, by the change that has them.
        if (change.op !== "delete" && this.writable(t, change.row).length === 0) break;
        // Identity ALWAYS columns cannot be assigned by a grouped update (see applyOne).
        if (change.op === "update" && this.writable(t, change.row).some(([c]) => c.identityAlways)) break;
        if (change.op !== "insert") this.keyColumns(t, change.key);
      } catch {
        break;
      }
      if (change.op === "insert") inserts.set(t.shape.oid, { sig, layer });
      layerOf.set(rowId, layer);
      const id = `${layer}\u0000${sig}`;
      const group = groups.get(id);
      if (group) group.changes.push(change);
      else groups.set(id, { layer, changes: [change] });
    }
    return { end: j, groups };
  }

  /**
   * A segment as one statement per group — layer by layer; in a layer deletes, then updates, then
   * inserts — in one savepoint. Each statement must hit exactly one row per change; otherwise the
   * segment is rolled back and applied in order.
   */
  private async applySegment(changes: RowChange[], i: number, segment: Segment): Promise<void> {
    const order = { delete: 0, update: 1, insert: 2 };
    const groups = [...segment.groups.values()].sort(
      (a, b) => a.layer - b.layer || order[a.changes[0]!.op] - order[b.changes[0]!.op],
    );
    const statements: Array<{ t: Target; run: GroupedChange[]; sql: string; params: unknown[] }> = [];
    for (const { changes: run } of groups) {
      const t = await this.target(run[0]!.table);
      statements.push({ t, run, ...this.groupedStatement(t, run)! });
    }
    const ok = await this.guarded(async () => {
      for (const st of statements) {
        if ((await this.query(st.sql, st.params)).rowCount !== st.run.length) return false;
      }
      return true;
    });
    if (!ok) {
      await this.applyInOrder(changes, i, segment.end);
      return;
    }
    for (const { t, run } of statements) {
      this.report.changes += run.length;
      if (run[0]!.op === "insert") t.stats.inserts += run.length;
      else if (run[0]!.op === "update") t.stats.updates += run.length;
      else t.stats.deletes += run.length;
    }
  }

  private tableKind(t: Target): Promise<TableKind> {
    let kind = TABLE_KINDS.get(t.shape);
    if (!kind) {
      kind = this.client
        .query<{ quiet: boolean; keyed: boolean; defaults: boolean }>(TABLE_KIND_SQL, [t.shape.oid])
        .then(({ rows }) => ({
          quiet: rows[0]?.quiet === true,
          commutes: rows[0]?.quiet === true && rows[0]?.keyed === true,
          insertOrder: rows[0]?.defaults !== false,
        }));
      TABLE_KINDS.set(t.shape, kind);
    }
    return kind;
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
        const written = this.writable(t, change.row);
        // GENERATED ALWAYS identity columns cannot be assigned: they must already hold the new value,
        // or the update counts as missed (reported, never silently lost).
        const sets = written.filter(([c]) => !c.identityAlways);
        const fixed = written.filter(([c]) => c.identityAlways);
        const keys = this.keyColumns(t, change.key);
        if (sets.length === 0) throw new ApplyError(`${t.shape.name}: update without writable columns`, t.table, "update");
        const conditions = [
          ...keys.map(([c], i) => `${ident(c.name)} = $${sets.length + i + 1}::${c.castType}`),
          ...fixed.map(([c], i) => `${ident(c.name)} is not distinct from $${sets.length + keys.length + i + 1}::${c.castType}`),
        ];
        const result = await this.query(
          `update ${only(t)}${t.shape.name} set ${sets.map(([c], i) => `${ident(c.name)} = $${i + 1}::${c.castType}`).join(", ")} where ` +
            conditions.join(" and "),
          [...sets.map(([, v]) => v), ...keys.map(([, v]) => v), ...fixed.map(([, v]) => v)],
        );
        this.counted(t, "update", change.key, result.rowCount ?? 0);
        return;
      }
      case "delete": {
        const keys = this.keyColumns(t, change.key);
        const result = await this.query(
          `delete from ${only(t)}${t.shape.name} where ${keys.map(([c], i) => `${ident(c.name)} = $${i + 1}::${c.castType}`).join(" and ")}`,
          keys.map(([, v]) => v),
        );
        this.counted(t, "delete", change.key, result.rowCount ?? 0);
        return;
      }
      case "truncate":
        await this.query(`truncate ${only(t)}${t.shape.name}`, []);
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

  /**
   * One statement for a run of changes with one signature (insert, update or delete, same table
   * and columns, no key twice, no key change); null for an update or delete run when the
   * subscriber's primary key is not exactly the change's key columns (only then does a row count
   * prove "one row per change"), or an update without writable columns.
   */
  private groupedStatement(t: Target, run: GroupedChange[]): { sql: string; params: Array<Array<string | null>> } | null {
    const first = run[0]!;
    if (first.op === "insert") {
      const cols = this.writable(t, first.row).map(([c]) => c);
      return {
        sql:
          `${this.insertHead(t, cols)} select ${cols.map((c, i) => `u.c${i + 1}::${c.castType}`).join(", ")} ` +
          `from unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}) as u(${cols.map((_, i) => `c${i + 1}`).join(", ")})`,
        params: cols.map((c) => run.map((ch) => (ch.op === "insert" ? (ch.row.get(c.name) ?? null) : null))),
      };
    }
    const keys = this.keyColumns(t, first.key).map(([c]) => c);
    const pk = t.shape.primaryKey;
    const keyed = pk.length === keys.length && keys.every((c) => pk.includes(c.name));
    const sets = first.op === "update" ? this.writable(t, first.row).map(([c]) => c) : [];
    // Identity ALWAYS columns cannot be assigned: such updates go row by row (applyOne).
    if (!keyed || (first.op === "update" && (sets.length === 0 || sets.some((c) => c.identityAlways)))) return null;
    const keyArrays = keys.map((c) => run.map((ch) => (ch.op !== "insert" ? (ch.key.get(c.name) ?? null) : null)));
    const keyAliases = keys.map((_, i) => `k${i + 1}`);
    const match = keys.map((c, i) => `t.${ident(c.name)} = u.k${i + 1}::${c.castType}`).join(" and ");
    if (first.op === "update") {
      const params = [...keyArrays, ...sets.map((c) => run.map((ch) => (ch.op === "update" ? (ch.row.get(c.name) ?? null) : null)))];
      return {
        sql:
          `update ${only(t)}${t.shape.name} as t set ${sets.map((c, i) => `${ident(c.name)} = u.c${i + 1}::${c.castType}`).join(", ")} ` +
          `from unnest(${params.map((_, i) => `$${i + 1}::text[]`).join(", ")}) ` +
          `as u(${[...keyAliases, ...sets.map((_, i) => `c${i + 1}`)].join(", ")}) where ${match}`,
        params,
      };
    }
    return {
      sql:
        `delete from ${only(t)}${t.shape.name} as t using unnest(${keyArrays.map((_, i) => `$${i + 1}::text[]`).join(", ")}) ` +
        `as u(${keyAliases.join(", ")}) where ${match}`,
      params: keyArrays,
    };
  }

  /**
   * A run of ≥ 2 inserts (same table and columns), or of ≥ MIN_GUARDED_RUN updates (same table,
   * row and key columns, no key change) or deletes (same table and key columns), no key twice.
   */
  private async applyRun(run: GroupedChange[]): Promise<void> {
    const first = run[0]!;
    const t = await this.target(first.table);
    const statement = this.groupedStatement(t, run);
    if (first.op === "insert") {
      await this.query(statement!.sql, statement!.params);
      this.report.changes += run.length;
      t.stats.inserts += run.length;
      return;
    }
    if (statement && (await this.guarded(async () => (await this.query(statement.sql, statement.params)).rowCount === run.length))) {
      this.report.changes += run.length;
      if (first.op === "update") t.stats.updates += run.length;
      else t.stats.deletes += run.length;
      return;
    }
    // No provable key, a key missed or was spelled twice, or a data error: find out row by row.
    for (const change of run) await this.applyOne(change);
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

interface SegmentGroup {
  layer: number;
  /** Same signature, in their order. */
  changes: GroupedChange[];
}

interface Segment {
  /** End (exclusive) in the changes. */
  end: number;
  /** The segment's changes by layer and signature. */
  groups: Map<string, SegmentGroup>;
}

/**
 * What grouping may do with a table. quiet: no trigger or rule fires in replica mode (ENABLE
 * ALWAYS/REPLICA), so a multi-row statement has no effect beyond its rows; commutes: also a plain
 * table whose only unique index (or exclusion constraint) is its primary key, on columns whose
 * text is one spelling per value (integers, text types with a deterministic collation, uuid, bool,
 * date, timestamps, bytea, enums), so changes to different rows can be applied in any order
 * (inserts too, unless insertOrder).
 */
interface TableKind {
  quiet: boolean;
  commutes: boolean;
  /** A column has a default or is an identity: inserts may fill it in their order (a sequence), so keep it. */
  insertOrder: boolean;
}

/** Per table shape (so per transaction, like the shapes). */
const TABLE_KINDS = new WeakMap<TableShape, Promise<TableKind>>();

const TABLE_KIND_SQL = `
select not exists (select 1 from pg_trigger g where g.tgrelid = c.oid and g.tgenabled in ('A', 'R'))
   and not exists (select 1 from pg_rewrite r
                    where r.ev_class = c.oid and r.rulename <> '_RETURN' and r.ev_enabled in ('A', 'R')) as quiet,
       c.relkind = 'r'
   and not exists (select 1 from pg_index i
                    where i.indrelid = c.oid and (i.indisunique or i.indisexclusion) and not i.indisprimary)
   and exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary)
   and not exists (
         select 1
           from pg_index i
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[])
           join pg_type ty on ty.oid = a.atttypid
           left join pg_collation co on co.oid = a.attcollation
          where i.indrelid = c.oid and i.indisprimary
            and (coalesce(not co.collisdeterministic, false)
                 or not (ty.typtype = 'e'
                         or (ty.typnamespace = 'pg_catalog'::regnamespace
                             and ty.typname in ('int2', 'int4', 'int8', 'text', 'varchar', 'bpchar', 'uuid', 'bool',
                                                'date', 'timestamp', 'timestamptz', 'bytea'))))) as keyed,
       exists (select 1 from pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
                  and (a.atthasdef or a.attidentity <> '')) as defaults
  from pg_class c
 where c.oid = $1`;

/** `only ` for a plain table (keeps inheriting tables out); nothing for a partitioned one. */
function only(t: Target): string {
  return t.shape.relkind === "p" ? "" : "only ";
}

/** Changes with equal signatures can share one multi-row statement; null: never grouped. */
function signature(change: RowChange): string | null {
  switch (change.op) {
    case "insert":
      return JSON.stringify(["I", change.table, [...change.row.keys()]]);
    case "update":
      for (const [name, value] of change.key) {
        if (!change.row.has(name) || change.row.get(name) !== value) return null; // a key change
      }
      return JSON.stringify(["U", change.table, [...change.row.keys()], [...change.key.keys()]]);
    case "delete":
      return JSON.stringify(["D", change.table, [...change.key.keys()]]);
    case "truncate":
      return null;
  }
}

/** The key values of an update or delete, for spotting a key given twice in one run. */
function keyText(change: RowChange): string {
  return change.op === "update" || change.op === "delete" ? JSON.stringify([...change.key.values()]) : "";
}
