/**
 * What replay's apply step (shared/londiste/apply.ts) is told and what it
 * reports: options, per-table counts, missed rows, and ApplyError for a
 * change that cannot be applied.
 */
import type { RowChange } from "../change-event.ts";
import type { TableShapeCache } from "../table-shape.ts";

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
