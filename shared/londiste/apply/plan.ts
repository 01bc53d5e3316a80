/**
 * How replay's apply step groups a list of changes into statements: runs
 * and segments. Pure: the tables' shapes and kinds come from a lookup the
 * executor fills first (segmentTables says which it needs).
 *
 * - Runs, in order: a run of consecutive inserts into one table with the
 *   same column list becomes one statement; so does a run of deletes from
 *   one table with the same key columns, and of updates of one table with
 *   the same row and key columns, none changing its key (the key columns'
 *   text in the row equal to the old key). A key never appears twice in a
 *   run. Update and delete runs shorter than MIN_GUARDED_RUN go row by row
 *   (their savepoint costs a round trip), and so does every run of a table
 *   that is not quiet (table-kind.ts).
 * - Segments, reordered: where a table commutes (table-kind.ts), a stretch
 *   of inserts, updates without key change and deletes of such tables is
 *   laid out in layers — a row's (table and primary key value) k-th change
 *   in the stretch goes to layer k — and applied layer by layer, one
 *   statement per kind and column list: deletes, updates, inserts (a
 *   table's inserts in a segment share one column list, and stay in their
 *   order across layers when a column has a default or is an identity,
 *   which a sequence may fill). In a layer each change touches a row no
 *   other change touches, and no trigger, rule, foreign key (replica mode)
 *   or other unique index ties rows together, so each change meets the
 *   same row state as in per-row order and the result is the same (a CHECK
 *   constraint or default whose function reads other rows would be a tie
 *   too; PostgreSQL does not support those). This is what makes an
 *   interleaved mix of inserts, updates and deletes fast. A segment shorter
 *   than MIN_SEGMENT, or one that would save no statement, is applied in
 *   order instead.
 * Runs and segments hold at most maxGroupRows changes. Key changes and
 * truncates always go row by row.
 */
import type { RowChange } from "../change-event.ts";
import { type GroupedChange, keyColumns, type TableRef, writableColumns } from "./statements.ts";
import type { TableKind } from "./table-kind.ts";

/** Update and delete runs shorter than this go row by row: the savepoint costs a round trip. */
export const MIN_GUARDED_RUN = 3;
/** Segments shorter than this are applied in order. */
export const MIN_SEGMENT = 4;

export interface PlanOptions {
  /** false: every change on its own (the per-row reference behaviour). */
  group: boolean;
  /** Most changes in one run or segment. */
  maxGroupRows: number;
}

/** What segment planning knows of a table. */
export interface PlannedTable {
  ref: TableRef;
  kind: Pick<TableKind, "commutes" | "insertOrder">;
}

/** A provider table's planning facts; undefined when it cannot be resolved (its error is raised when its change is applied). */
export type TableLookup = (table: string) => PlannedTable | undefined;

export interface SegmentGroup {
  layer: number;
  /** Same signature, in their order. */
  changes: GroupedChange[];
}

export interface Segment {
  /** End (exclusive) in the changes. */
  end: number;
  /** The segment's changes by layer and signature. */
  groups: Map<string, SegmentGroup>;
}

/** What to do at a position: a segment, or the changes up to `end` in their order. */
export type Step = { kind: "segment"; end: number; groups: SegmentGroup[] } | { kind: "in-order"; end: number };

/** Consecutive changes [from, to) of an in-order stretch; grouped: one statement if the table is quiet. */
export interface Run {
  from: number;
  to: number;
  grouped: boolean;
}

/*
 * Signatures and key texts are built for every change, several times over
 * while planning a batch, so they are plain strings joined with characters
 * PostgreSQL text and names never hold (NUL, and \u0001 between names),
 * and a change's signature is worked out once.
 */
const SEP = "\u0000";
const names = (m: Map<string, string | null>) => [...m.keys()].join("\u0001");
const signatures = new WeakMap<RowChange, string | null>();

/** Changes with equal signatures can share one multi-row statement; null: never grouped. */
export function signature(change: RowChange): string | null {
  let sig = signatures.get(change);
  if (sig === undefined) {
    sig = computeSignature(change);
    signatures.set(change, sig);
  }
  return sig;
}

function computeSignature(change: RowChange): string | null {
  switch (change.op) {
    case "insert":
      return `I${SEP}${change.table}${SEP}${names(change.row)}`;
    case "update":
      for (const [name, value] of change.key) {
        if (!change.row.has(name) || change.row.get(name) !== value) return null; // a key change
      }
      return `U${SEP}${change.table}${SEP}${names(change.row)}${SEP}${names(change.key)}`;
    case "delete":
      return `D${SEP}${change.table}${SEP}${names(change.key)}`;
    case "truncate":
      return null;
  }
}

/** Values as one string, null told apart from every text. */
function valuesText(values: Iterable<string | null>): string {
  let out = "";
  for (const v of values) out += v === null ? `${SEP}N` : `${SEP}V${v}`;
  return out;
}

/** The key values of an update or delete, for spotting a key given twice in one run. */
function keyText(change: RowChange): string {
  return change.op === "update" || change.op === "delete" ? valuesText(change.key.values()) : "";
}

/** End (exclusive, at most `limit`) of the run of changes that can share one statement with changes[i]. */
export function runEnd(changes: readonly RowChange[], i: number, limit: number, options: PlanOptions): number {
  const first = changes[i]!;
  const sig = options.group ? signature(first) : null;
  if (sig === null) return i + 1;
  // Update and delete runs hold each key once.
  const keys = first.op === "insert" ? null : new Set([keyText(first)]);
  let end = i + 1;
  while (end < limit && end - i < options.maxGroupRows) {
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

/** The runs of changes[from, to), in order. */
export function inOrderRuns(changes: readonly RowChange[], from: number, to: number, options: PlanOptions): Run[] {
  const runs: Run[] = [];
  for (let i = from; i < to; ) {
    const end = runEnd(changes, i, to, options);
    const length = end - i;
    runs.push({ from: i, to: end, grouped: length > 1 && (changes[i]!.op === "insert" || length >= MIN_GUARDED_RUN) });
    i = end;
  }
  return runs;
}

/** Whether nextStep at i looks for a segment, and so needs the lookup to know segmentTables(i). */
export function looksForSegment(changes: readonly RowChange[], i: number, options: PlanOptions): boolean {
  return options.group && changes.length - i >= MIN_SEGMENT;
}

/** The tables a segment starting at changes[i] may take in, in order of first appearance. */
export function segmentTables(changes: readonly RowChange[], i: number, options: PlanOptions): string[] {
  const tables = new Set<string>();
  for (let j = i; j < changes.length && j - i < options.maxGroupRows; j++) {
    const change = changes[j]!;
    if (change.op === "truncate" || signature(change) === null) break;
    tables.add(change.table);
  }
  return [...tables];
}

/**
 * The segment starting at changes[i]: the longest stretch (at most maxGroupRows) of inserts,
 * updates without key change and deletes of tables whose changes commute, laid out in layers:
 * a row's (subscriber table and primary key value) k-th change in the segment goes to layer k,
 * so a layer holds each row at most once. A table's inserts share one column list and, when
 * the table has defaults (insertOrder), stay in their order: an insert may not go to a lower
 * layer than an earlier insert into its table. end === i: changes[i] cannot start one.
 */
export function planSegment(changes: readonly RowChange[], i: number, options: PlanOptions, lookup: TableLookup): Segment {
  const layerOf = new Map<string, number>();
  const inserts = new Map<number, { sig: string; layer: number }>();
  const groups = new Map<string, SegmentGroup>();
  let j = i;
  for (; j < changes.length && j - i < options.maxGroupRows; j++) {
    const change = changes[j]!;
    const sig = signature(change);
    if (sig === null || change.op === "truncate") break;
    const planned = lookup(change.table);
    if (!planned?.kind.commutes) break;
    const t = planned.ref;
    const pk = t.shape.primaryKey;
    let values: Array<string | null>;
    if (change.op === "insert") {
      if (!pk.every((k) => change.row.has(k))) break;
      values = pk.map((k) => change.row.get(k)!);
    } else {
      if (change.key.size !== pk.length || !pk.every((k) => change.key.has(k))) break;
      values = pk.map((k) => change.key.get(k)!);
    }
    const rowId = `${t.shape.oid}${valuesText(values)}`;
    const layer = (layerOf.get(rowId) ?? 0) + 1;
    if (change.op === "insert") {
      const earlier = inserts.get(t.shape.oid);
      if (earlier && (earlier.sig !== sig || (planned.kind.insertOrder && earlier.layer > layer))) break;
    }
    try {
      // Column errors are raised in order, by the change that has them.
      if (change.op !== "delete" && writableColumns(t, change.row).length === 0) break;
      // Identity ALWAYS columns cannot be assigned by a grouped update (see statements.ts).
      if (change.op === "update" && writableColumns(t, change.row).some(([c]) => c.identityAlways)) break;
      if (change.op !== "insert") keyColumns(t, change.key);
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

/** A segment's groups in the order they are applied: layer by layer; in a layer deletes, then updates, then inserts. */
export function segmentOrder(segment: Segment): SegmentGroup[] {
  const order = { delete: 0, update: 1, insert: 2 };
  return [...segment.groups.values()].sort((a, b) => a.layer - b.layer || order[a.changes[0]!.op] - order[b.changes[0]!.op]);
}

/**
 * What to apply at changes[i]: a segment when one is long enough and saves statements, else the
 * changes in order up to the end of the segment that was found (or of the run at i).
 */
export function nextStep(changes: readonly RowChange[], i: number, options: PlanOptions, lookup: TableLookup): Step {
  const segment = looksForSegment(changes, i, options) ? planSegment(changes, i, options, lookup) : null;
  if (segment && segment.end - i >= MIN_SEGMENT && segment.groups.size + 1 < segment.end - i) {
    return { kind: "segment", end: segment.end, groups: segmentOrder(segment) };
  }
  return { kind: "in-order", end: segment && segment.end > i ? segment.end : runEnd(changes, i, changes.length, options) };
}
