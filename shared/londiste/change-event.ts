/**
 * Decoding a Londiste change event (see londiste.create_capture for the
 * encoding) into the row change it describes. Pure.
 */
import { parseRecord, parseTextArray, RecordTextError } from "./record-text.ts";

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
    case "I":
      return { op: "insert", table, row: zip(parseTextArray(ev.extra2 ?? ""), parseRecord(ev.data ?? ""), "row", table) };
    case "U": {
      const keys = parseTextArray(ev.extra4 ?? "");
      return {
        op: "update",
        table,
        row: zip(parseTextArray(ev.extra2 ?? ""), parseRecord(ev.data ?? ""), "row", table),
        key: zip(keys, parseRecord(ev.extra3 ?? ""), "old key", table),
      };
    }
    case "D":
      return { op: "delete", table, key: zip(parseTextArray(ev.extra4 ?? ""), parseRecord(ev.data ?? ""), "key", table) };
    case "R":
      return { op: "truncate", table };
    default:
      throw new RecordTextError(`${table}: unknown change type ${JSON.stringify(ev.type)}`);
  }
}
