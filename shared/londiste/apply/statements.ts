/**
 * The SQL of replay's apply step, built from a subscriber table's shape:
 * one statement per change, and one multi-row statement per run of
 * changes. Pure.
 *
 * SQL only ever contains the catalog's own quoted table name and quoted
 * column names; values travel as text parameters cast to the subscriber
 * column's type (without typmod: the typmod then applies on assignment,
 * as on the provider). Generated subscriber columns are skipped (the
 * subscriber computes them); a provider column missing on the subscriber
 * is an error.
 * - insert → `insert into T (...) overriding system value values (...)`;
 * - update → `update only T set <all row columns> where <old key>`; a
 *   GENERATED ALWAYS identity column cannot be assigned, so it is matched
 *   instead (`is not distinct from` the new value): an update that would
 *   change it finds no row;
 * - delete → `delete from only T where <key>`;
 * - truncate → `truncate only T` (no cascade).
 * Statements reach the table's own rows the one shared way (ownRows:
 * without `only` for a partitioned table).
 * Grouped, a run becomes `insert ... select ... from unnest(...)`,
 * `update ... set ... from unnest(...) where T.key = u.key` or
 * `delete ... using unnest(...)`, its values as text[] parameters (array
 * literals).
 */
import { ownRows, quoteIdent } from "../../db/sql-text.ts";
import type { RowChange } from "../change-event.ts";
import type { ColumnShape, TableShape } from "../table-shape.ts";
import { ApplyError } from "./types.ts";

/** A provider table and the subscriber table its changes go to. */
export interface TableRef {
  /** Provider table name, as in the changes (for errors). */
  table: string;
  shape: TableShape;
}

export interface Statement {
  sql: string;
  params: unknown[];
}

export type GroupedChange = Extract<RowChange, { op: "insert" | "update" | "delete" }>;

type Values = Map<string, string | null>;

function column(t: TableRef, name: string): ColumnShape {
  const col = t.shape.columns.get(name);
  if (!col) {
    throw new ApplyError(`${t.shape.name}: column ${quoteIdent(name)} does not exist on dest side`, t.table, undefined, undefined, name);
  }
  return col;
}

/** Row columns that are written: all must exist, generated ones are skipped. */
export function writableColumns(t: TableRef, row: Values): Array<[ColumnShape, string | null]> {
  const out: Array<[ColumnShape, string | null]> = [];
  for (const [name, value] of row) {
    const col = column(t, name);
    if (!col.generated) out.push([col, value]);
  }
  return out;
}

export function keyColumns(t: TableRef, key: Values): Array<[ColumnShape, string | null]> {
  if (key.size === 0) throw new ApplyError(`${t.shape.name}: change without key columns`, t.table);
  return [...key].map(([name, value]) => [column(t, name), value]);
}

function insertHead(t: TableRef, cols: ColumnShape[]): string {
  const overriding = cols.some((c) => c.identityAlways) ? " overriding system value" : "";
  return `insert into ${t.shape.name} (${cols.map((c) => quoteIdent(c.name)).join(", ")})${overriding}`;
}

const target = (t: TableRef) => ownRows(t.shape.name, t.shape.relkind);

/** One change as one statement. */
export function changeStatement(t: TableRef, change: RowChange): Statement {
  switch (change.op) {
    case "insert": {
      const entries = writableColumns(t, change.row);
      const cols = entries.map(([c]) => c);
      return {
        sql: `${insertHead(t, cols)} values (${cols.map((c, i) => `$${i + 1}::${c.castType}`).join(", ")})`,
        params: entries.map(([, v]) => v),
      };
    }
    case "update": {
      const written = writableColumns(t, change.row);
      // GENERATED ALWAYS identity columns cannot be assigned: they must already hold the new value,
      // or the update counts as missed (reported, never silently lost).
      const sets = written.filter(([c]) => !c.identityAlways);
      const fixed = written.filter(([c]) => c.identityAlways);
      const keys = keyColumns(t, change.key);
      if (sets.length === 0) throw new ApplyError(`${t.shape.name}: update without writable columns`, t.table, "update");
      const conditions = [
        ...keys.map(([c], i) => `${quoteIdent(c.name)} = $${sets.length + i + 1}::${c.castType}`),
        ...fixed.map(([c], i) => `${quoteIdent(c.name)} is not distinct from $${sets.length + keys.length + i + 1}::${c.castType}`),
      ];
      return {
        sql:
          `update ${target(t)} set ${sets.map(([c], i) => `${quoteIdent(c.name)} = $${i + 1}::${c.castType}`).join(", ")} where ` +
          conditions.join(" and "),
        params: [...sets.map(([, v]) => v), ...keys.map(([, v]) => v), ...fixed.map(([, v]) => v)],
      };
    }
    case "delete": {
      const keys = keyColumns(t, change.key);
      return {
        sql: `delete from ${target(t)} where ${keys.map(([c], i) => `${quoteIdent(c.name)} = $${i + 1}::${c.castType}`).join(" and ")}`,
        params: keys.map(([, v]) => v),
      };
    }
    case "truncate":
      return { sql: `truncate ${target(t)}`, params: [] };
  }
}

/**
 * A text[] parameter as PostgreSQL's array literal: what node-postgres
 * makes of a JS array, built here with one scan per value instead of two
 * regular expressions (this runs for every value of every grouped change).
 */
export function textArrayLiteral(values: ReadonlyArray<string | null>): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ",";
    const v = values[i];
    if (v === null || v === undefined) out += "NULL";
    else if (v.includes("\\") || v.includes('"')) out += `"${v.replace(/[\\"]/g, "\\$&")}"`;
    else out += `"${v}"`;
  }
  return `${out}}`;
}

/**
 * One statement for a run of changes with one signature (insert, update or delete, same table
 * and columns, no key twice, no key change); null for an update or delete run when the
 * subscriber's primary key is not exactly the change's key columns (only then does a row count
 * prove "one row per change"), or an update without writable columns or with an identity
 * ALWAYS column (which cannot be assigned: such updates go one by one).
 */
export function groupedStatement(t: TableRef, run: GroupedChange[]): Statement | null {
  const first = run[0]!;
  if (first.op === "insert") {
    const cols = writableColumns(t, first.row).map(([c]) => c);
    return {
      sql:
        `${insertHead(t, cols)} select ${cols.map((c, i) => `u.c${i + 1}::${c.castType}`).join(", ")} ` +
        `from unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}) as u(${cols.map((_, i) => `c${i + 1}`).join(", ")})`,
      params: cols.map((c) => textArrayLiteral(run.map((ch) => (ch.op === "insert" ? (ch.row.get(c.name) ?? null) : null)))),
    };
  }
  const keys = keyColumns(t, first.key).map(([c]) => c);
  const pk = t.shape.primaryKey;
  const keyed = pk.length === keys.length && keys.every((c) => pk.includes(c.name));
  const sets = first.op === "update" ? writableColumns(t, first.row).map(([c]) => c) : [];
  if (!keyed || (first.op === "update" && (sets.length === 0 || sets.some((c) => c.identityAlways)))) return null;
  const keyArrays = keys.map((c) => textArrayLiteral(run.map((ch) => (ch.op !== "insert" ? (ch.key.get(c.name) ?? null) : null))));
  const keyAliases = keys.map((_, i) => `k${i + 1}`);
  const match = keys.map((c, i) => `t.${quoteIdent(c.name)} = u.k${i + 1}::${c.castType}`).join(" and ");
  if (first.op === "update") {
    const params = [...keyArrays, ...sets.map((c) => textArrayLiteral(run.map((ch) => (ch.op === "update" ? (ch.row.get(c.name) ?? null) : null))))];
    return {
      sql:
        `update ${target(t)} as t set ${sets.map((c, i) => `${quoteIdent(c.name)} = u.c${i + 1}::${c.castType}`).join(", ")} ` +
        `from unnest(${params.map((_, i) => `$${i + 1}::text[]`).join(", ")}) ` +
        `as u(${[...keyAliases, ...sets.map((_, i) => `c${i + 1}`)].join(", ")}) where ${match}`,
      params,
    };
  }
  return {
    sql:
      `delete from ${target(t)} as t using unnest(${keyArrays.map((_, i) => `$${i + 1}::text[]`).join(", ")}) ` +
      `as u(${keyAliases.join(", ")}) where ${match}`,
    params: keyArrays,
  };
}
