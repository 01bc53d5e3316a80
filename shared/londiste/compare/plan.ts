/**
 * How one replicated table is compared and repaired: which columns, in
 * which order, and every SQL statement that reads or fixes it on either
 * side. Built from the two sides' catalog descriptions; a table that
 * cannot be compared soundly is refused with the reason. Pure.
 *
 * Compared columns: the provider's columns (attnum order) that exist on
 * the subscriber and are not generated there (replay does not write those
 * either). Rows are read as [key columns in key order, other columns in
 * provider order], ordered by the key with text-like key columns under
 * collation "C" (unless they sort bytewise already), the same on both
 * sides, so a streaming merge sees both in one order; the key's type must
 * be the same on both sides for that.
 *
 * Row checksums: sum(hashtextextended(row(<compared columns>)::text, 0)),
 * order-independent; the record text keeps NULL and '' apart.
 *
 * Reads and fixes reach a table's own rows the one way every writer does
 * (ownRows): `only` keeps inheriting tables out, and a partitioned table
 * is named without it, which is the only way to reach its partitions.
 * Each fix statement changes exactly one subscriber row.
 */
import type { DescribedColumn, DescribedTable } from "./describe.ts";
import { type KeyKind, keyKind } from "./key-order.ts";
import { ownRows, quoteIdent, quoteLiteral, typedLiteral } from "../../db/sql-text.ts";
import { setStatements, VALUE_TEXT_SETTINGS } from "../../db/value-text.ts";
import type { RowDiff } from "./merge.ts";
import { fromStateText, isComparable } from "../sync-machine.ts";

export type Row = Array<string | null>;

/** A key range (after, upTo]: null means unbounded on that end. */
export interface KeyRange {
  after: string[] | null;
  upTo: string[] | null;
}

export const WHOLE_TABLE: KeyRange = { after: null, upTo: null };

export interface Query {
  text: string;
  values: unknown[];
}

interface SidePlan {
  /** Canonical name. */
  name: string;
  /** The table as reads and fixes name it: `only <name>`, or `<name>` for a partitioned one (ownRows). */
  from: string;
  /** Only a plain table can be sampled. */
  partitioned: boolean;
  /** Key expressions for ORDER BY and range conditions (collate "C" where needed). */
  keyExprs: string[];
  /** Cast type of each key column on this side. */
  keyCast: string[];
}

export interface TablePlan {
  /** The provider table (canonical). */
  table: string;
  /** The subscriber table written (canonical). */
  dest: string;
  /** Key column names, key order. */
  keys: string[];
  keyKinds: KeyKind[];
  /** All compared columns in merge order: keys first, then the rest in provider order. */
  columns: string[];
  /** Subscriber cast type per merge column. */
  subscriberCast: string[];
  /** Columns the subscriber needs OVERRIDING SYSTEM VALUE for. */
  identityAlways: boolean;
  provider: SidePlan;
  subscriber: SidePlan;
  /** Row text expression over the compared columns in provider order. */
  rowText: string;
  /** Differences that do not stop the comparison (columns not compared). */
  warnings: string[];
}

/** notSynced: refused only because a copy owns the table (or will): skipped when not named. */
export type PlanResult = { ok: true; plan: TablePlan } | { ok: false; reason: string; notSynced?: boolean };

const COMPARABLE_KINDS = new Set(["r", "p"]);

function sidePlan(t: DescribedTable, keys: DescribedColumn[]): SidePlan {
  return {
    name: t.name,
    from: ownRows(t.name, t.relkind),
    partitioned: t.relkind === "p",
    keyExprs: keys.map((c) => (c.collatable && !c.byteOrdered ? `${quoteIdent(c.name)} collate pg_catalog."C"` : quoteIdent(c.name))),
    keyCast: keys.map((c) => c.castType),
  };
}

/** Whether a table whose merge_state is `state` can be compared (sync-machine.ts says which states). */
export function comparableStateText(state: string | null): boolean {
  try {
    return isComparable(fromStateText(state).state);
  } catch {
    return false;
  }
}

/**
 * The plan, or why the table is refused. `state` is the subscriber's
 * merge_state (null = none).
 */
export function planTable(
  table: string,
  dest: string,
  state: string | null,
  provider: DescribedTable | null,
  subscriber: DescribedTable | null,
): PlanResult {
  if (!comparableStateText(state)) {
    return { ok: false, reason: `${table}: state ${state ?? "(none)"}: not in sync yet (to be copied or being copied), nothing to compare`, notSynced: true };
  }
  if (!provider) return { ok: false, reason: `${table}: no such table on the provider` };
  if (!subscriber) return { ok: false, reason: `${dest}: no such table on the subscriber` };
  if (!COMPARABLE_KINDS.has(provider.relkind)) return { ok: false, reason: `${table}: not a table on the provider` };
  if (!COMPARABLE_KINDS.has(subscriber.relkind)) return { ok: false, reason: `${dest}: not a table on the subscriber` };
  const pk = provider.primaryKey;
  const sk = subscriber.primaryKey;
  if (pk.length === 0) return { ok: false, reason: `${table}: the provider table has no primary key` };
  const show = (k: string[]) => (k.length === 0 ? "none" : `(${k.join(", ")})`);
  if (pk.length !== sk.length || pk.some((k, i) => k !== sk[i])) {
    return { ok: false, reason: `${table}: primary keys do not match: provider ${show(pk)}, subscriber ${show(sk)}` };
  }
  const pCols = new Map(provider.columns.map((c) => [c.name, c]));
  const sCols = new Map(subscriber.columns.map((c) => [c.name, c]));
  const pKeys = pk.map((k) => pCols.get(k)!);
  const sKeys = pk.map((k) => sCols.get(k)!);
  for (let i = 0; i < pk.length; i++) {
    if (pKeys[i]!.castType !== sKeys[i]!.castType) {
      return {
        ok: false,
        reason: `${table}: primary keys do not match: ${JSON.stringify(pk[i])} is ${pKeys[i]!.type} on the provider, ${sKeys[i]!.type} on the subscriber`,
      };
    }
  }

  const warnings: string[] = [];
  const compared: DescribedColumn[] = [];
  for (const c of provider.columns) {
    const theirs = sCols.get(c.name);
    if (!theirs) warnings.push(`column ${JSON.stringify(c.name)} is not on the subscriber: not compared`);
    else if (theirs.generated && !c.generated) warnings.push(`column ${JSON.stringify(c.name)} is generated on the subscriber: not compared`);
    else compared.push(c);
  }
  for (const c of subscriber.columns) {
    if (!pCols.has(c.name)) warnings.push(`column ${JSON.stringify(c.name)} is only on the subscriber: not compared`);
  }
  const others = compared.filter((c) => !pk.includes(c.name));
  const columns = [...pk, ...others.map((c) => c.name)];
  return {
    ok: true,
    plan: {
      table: provider.name,
      dest: subscriber.name,
      keys: pk,
      keyKinds: pKeys.map((c) => keyKind(c.baseTypeOid)),
      columns,
      subscriberCast: columns.map((n) => sCols.get(n)!.castType),
      identityAlways: columns.some((n) => sCols.get(n)!.identityAlways),
      provider: sidePlan(provider, pKeys),
      subscriber: sidePlan(subscriber, sKeys),
      rowText: `row(${compared.map((c) => quoteIdent(c.name)).join(", ")})::text`,
      warnings,
    },
  };
}

export type Side = "provider" | "subscriber";

/** `(k1, k2) > ($n::t1, ...)`-style condition of a range, with its values; "" for the whole table. */
export function rangeCondition(plan: TablePlan, side: Side, range: KeyRange, firstParam = 1): { sql: string; values: string[] } {
  const s = plan[side];
  const parts: string[] = [];
  const values: string[] = [];
  const tuple = (op: string, key: string[]) => {
    const params = key.map((_, i) => `$${firstParam + values.length + i}::${s.keyCast[i]}`);
    values.push(...key);
    parts.push(s.keyExprs.length === 1 ? `${s.keyExprs[0]} ${op} ${params[0]}` : `(${s.keyExprs.join(", ")}) ${op} (${params.join(", ")})`);
  };
  if (range.after) tuple(">", range.after);
  if (range.upTo) tuple("<=", range.upTo);
  return { sql: parts.join(" and "), values };
}

const where = (cond: string) => (cond ? ` where ${cond}` : "");

/** Row count and checksum of a range: one row (rows int8, sum text). */
export function checksumQuery(plan: TablePlan, side: Side, range: KeyRange = WHOLE_TABLE): Query {
  const cond = rangeCondition(plan, side, range);
  return {
    text:
      `select pg_catalog.count(*)::int8 as rows, ` +
      `coalesce(pg_catalog.sum(pg_catalog.hashtextextended(${plan.rowText}, 0)), 0)::text as sum ` +
      `from ${plan[side].from}${where(cond.sql)}`,
    values: cond.values,
  };
}

/**
 * Every step-th key of a range in key order (the range's quantiles), as rows of key texts.
 * With samplePercent, of a TABLESAMPLE SYSTEM sample of the table instead (approximate
 * quantiles at a fraction of the reads; plain tables only).
 */
export function quantileQuery(plan: TablePlan, side: Side, range: KeyRange, step: number, samplePercent?: number): Query {
  const s = plan[side];
  const cond = rangeCondition(plan, side, range);
  const keys = plan.keys.map(quoteIdent);
  const sample = samplePercent === undefined ? "" : ` tablesample system (${Math.min(100, Math.max(0.0001, samplePercent)).toFixed(4)})`;
  return {
    text:
      `select ${keys.join(", ")} from (select ${keys.join(", ")}, pg_catalog.row_number() over (order by ${s.keyExprs.join(", ")}) as rn ` +
      `from ${s.from}${sample}${where(cond.sql)}) q where rn % ${Math.max(1, Math.floor(step))} = 0 order by rn`,
    values: cond.values,
  };
}

/** Whether a side's table can be sampled (TABLESAMPLE on a plain table). */
export function canSample(plan: TablePlan, side: Side): boolean {
  return !plan[side].partitioned;
}

/** The compared columns of a range in merge order, ordered by the key. */
export function mergeQuery(plan: TablePlan, side: Side, range: KeyRange = WHOLE_TABLE): Query {
  const s = plan[side];
  const cond = rangeCondition(plan, side, range);
  return {
    text: `select ${plan.columns.map(quoteIdent).join(", ")} from ${s.from}${where(cond.sql)} order by ${s.keyExprs.join(", ")}`,
    values: cond.values,
  };
}

/** The compared columns of the rows with the given keys, ordered by the key. */
export function keyFetchQuery(plan: TablePlan, side: Side, keys: ReadonlyArray<ReadonlyArray<string>>): Query {
  const s = plan[side];
  const values: string[] = [];
  const tuples = keys.map((key) => {
    const params = key.map((v, i) => {
      values.push(v);
      return `$${values.length}::${s.keyCast[i]}`;
    });
    return `(${params.join(", ")})`;
  });
  const keyList = `(${plan.keys.map(quoteIdent).join(", ")})`;
  return {
    text: `select ${plan.columns.map(quoteIdent).join(", ")} from ${s.from} where ${keyList} in (values ${tuples.join(", ")}) order by ${s.keyExprs.join(", ")}`,
    values,
  };
}

/** Postgres' comparison of two keys in the merge order: one row (c int: -1, 0, 1). */
export function keyCompareQuery(plan: TablePlan, a: ReadonlyArray<string | null>, b: ReadonlyArray<string | null>): Query {
  const s = plan.provider;
  const n = plan.keys.length;
  const collate = (i: number) => (s.keyExprs[i]!.endsWith('collate pg_catalog."C"') ? ' collate pg_catalog."C"' : "");
  const tuple = (offset: number) => `row(${plan.keys.map((_, i) => `$${offset + i + 1}::${s.keyCast[i]}${collate(i)}`).join(", ")})`;
  return {
    text: `select case when ${tuple(0)} < ${tuple(n)} then -1 when ${tuple(0)} = ${tuple(n)} then 0 else 1 end as c`,
    values: [...a.slice(0, n), ...b.slice(0, n)],
  };
}

// ---------------------------------------------------------------- fixes

function keyMatch(plan: TablePlan, row: Row): string {
  return plan.keys.map((k, i) => `${quoteIdent(k)} = ${typedLiteral(row[i]!, plan.subscriberCast[i]!)}`).join(" and ");
}

/** INSERT of a provider row missing on the subscriber. */
export function insertStatement(plan: TablePlan, src: Row): string {
  const cols = plan.columns.map(quoteIdent).join(", ");
  const values = src.map((v, i) => typedLiteral(v, plan.subscriberCast[i]!)).join(", ");
  return `insert into ${plan.dest} (${cols})${plan.identityAlways ? " overriding system value" : ""} values (${values});`;
}

/** UPDATE of the columns that differ, found by the subscriber row's key. */
export function updateStatement(plan: TablePlan, src: Row, dst: Row): string {
  const sets: string[] = [];
  for (let i = 0; i < plan.columns.length; i++) {
    if (src[i] !== dst[i]) sets.push(`${quoteIdent(plan.columns[i]!)} = ${typedLiteral(src[i]!, plan.subscriberCast[i]!)}`);
  }
  return `update ${plan.subscriber.from} set ${sets.join(", ")} where ${keyMatch(plan, dst)};`;
}

/** DELETE of a subscriber row the provider does not have. */
export function deleteStatement(plan: TablePlan, dst: Row): string {
  return `delete from ${plan.subscriber.from} where ${keyMatch(plan, dst)};`;
}

/** The settings a fix file runs under (the values in it are printed under them). */
export function fixFileHeader(plan: TablePlan, note: string): string {
  return [
    `-- londiste repair: ${plan.table}${plan.dest === plan.table ? "" : ` (subscriber table ${plan.dest})`}`,
    `-- ${note}`,
    "-- The subscriber table may deny writes by anyone but replay: then run it as a role that may",
    "-- set session_replication_role (a superuser, or one granted SET on it) with",
    "-- set session_replication_role = replica;",
    `${setStatements(VALUE_TEXT_SETTINGS)};`,
    "",
  ].join("\n");
}

/** For messages: a key as `(v1, v2)` literals. */
export function showKey(key: ReadonlyArray<string | null> | null): string | null {
  return key === null ? null : key.length === 1 ? quoteLiteral(String(key[0])) : `(${key.map((v) => quoteLiteral(String(v))).join(", ")})`;
}

/** The statement that makes the subscriber row equal to the provider's. */
export function fixStatement(plan: TablePlan, diff: RowDiff): string {
  switch (diff.kind) {
    case "insert":
      return insertStatement(plan, diff.src);
    case "update":
      return updateStatement(plan, diff.src, diff.dst);
    case "delete":
      return deleteStatement(plan, diff.dst);
  }
}

/** The key of the row a difference is about (the subscriber's for updates and deletes). */
export function diffKey(plan: TablePlan, diff: RowDiff): string[] {
  const row = diff.kind === "insert" ? diff.src : diff.dst;
  return row.slice(0, plan.keys.length) as string[];
}
