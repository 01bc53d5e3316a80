/**
 * The event types of a Londiste queue and the decoding of a change event
 * into the row change it describes. The SQL side writes these types
 * (londiste.create_capture: the row changes; londiste.provider_notify_change:
 * the table list); every reader of a batch classifies events here. Pure.
 */
import { parseRecord, parseTextArray, RecordTextError } from "./record-text.ts";

/** ev_type of each Londiste event. */
export const EVENT_TYPE = {
  insert: "I",
  update: "U",
  delete: "D",
  truncate: "R",
  /** The complete list of tables the provider captures, sent when it changes. */
  tableList: "T",
} as const;

export type ChangeEventType = typeof EVENT_TYPE.insert | typeof EVENT_TYPE.update | typeof EVENT_TYPE.delete | typeof EVENT_TYPE.truncate;

const CHANGE_TYPES: ReadonlySet<string | null> = new Set<ChangeEventType>([EVENT_TYPE.insert, EVENT_TYPE.update, EVENT_TYPE.delete, EVENT_TYPE.truncate]);

/** A row change of a captured table (decodeChange reads it). */
export function isChangeEvent(type: string | null): type is ChangeEventType {
  return CHANGE_TYPES.has(type);
}

export function isTruncateEvent(type: string | null): boolean {
  return type === EVENT_TYPE.truncate;
}

export function isTableListEvent(type: string | null): boolean {
  return type === EVENT_TYPE.tableList;
}

export type RowChange =
  | { op: "insert"; table: string; row: Map<string, string | null> }
  | { op: "update"; table: string; row: Map<string, string | null>; key: Map<string, string | null> }
  | { op: "delete"; table: string; key: Map<string, string | null> }
  | { op: "truncate"; table: string };

export interface ChangeEventFields {
  type: string | null;
  data: string | null;
  extra1: string | null;
  extra2: string | null;
  extra3: string | null;
  extra4: string | null;
}

function zip(names: string[], values: Array<string | null>, what: string, table: string): Map<string, string | null> {
  if (names.length !== values.length) {
    throw new RecordTextError(
      `${table}: ${what} has ${values.length} values for ${names.length} columns ` +
        "(columns changed on the provider since the capture was created: re-create it)",
    );
  }
  return new Map(names.map((n, i) => [n, values[i]!]));
}

export function decodeChange(ev: ChangeEventFields): RowChange {
  const table = ev.extra1;
  if (!table) throw new RecordTextError("change event without a table name (ev_extra1)");
  switch (ev.type) {
    case EVENT_TYPE.insert:
      return { op: "insert", table, row: zip(parseTextArray(ev.extra2 ?? ""), parseRecord(ev.data ?? ""), "row", table) };
    case EVENT_TYPE.update: {
      const keys = parseTextArray(ev.extra4 ?? "");
      return {
        op: "update",
        table,
        row: zip(parseTextArray(ev.extra2 ?? ""), parseRecord(ev.data ?? ""), "row", table),
        key: zip(keys, parseRecord(ev.extra3 ?? ""), "old key", table),
      };
    }
    case EVENT_TYPE.delete:
      return { op: "delete", table, key: zip(parseTextArray(ev.extra4 ?? ""), parseRecord(ev.data ?? ""), "key", table) };
    case EVENT_TYPE.truncate:
      return { op: "truncate", table };
    default:
      throw new RecordTextError(`${table}: unknown change type ${JSON.stringify(ev.type)}`);
  }
}
