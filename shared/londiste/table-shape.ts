/**
 * What replay needs to know about a subscriber table, read from the
 * catalog with one query: its canonical quoted name, its live columns
 * (type, generated, identity) and its primary key.
 *
 * Names are resolved with to_regclass, so a name that arrives in an event
 * is never spliced into SQL: statements use the canonical name built from
 * the catalog (`format('%I.%I', schema, table)`).
 *
 * A TableShapeCache must not outlive the transaction it was filled in:
 * the catalog may change between transactions (and format_type's output
 * depends on the session's search_path).
 */
import type { Queryable } from "../db/queryable.ts";

export interface ColumnShape {
  name: string;
  /** format_type with the column's typmod, e.g. `numeric(10,3)`; for messages. */
  type: string;
  /**
   * format_type with typmod -1, e.g. `numeric`, `bpchar`, `"bit"`: values are cast to
   * this, and the column's typmod then applies on assignment exactly as on the provider
   * (an explicit cast to `varchar(3)` or `bit(4)` would silently truncate instead).
   */
  castType: string;
  /** GENERATED ALWAYS AS (...) STORED: never written, the subscriber computes it. */
  generated: boolean;
  /** GENERATED ALWAYS AS IDENTITY: inserts need OVERRIDING SYSTEM VALUE. */
  identityAlways: boolean;
}

export interface TableShape {
  /** The name that was asked for. */
  requested: string;
  /** Canonical quoted `schema.table` from the catalog; the only form put into SQL. */
  name: string;
  oid: number;
  /** `r` (table) or `p` (partitioned table) for anything replay may write to. */
  relkind: string;
  /** Live columns in attnum order. */
  columns: Map<string, ColumnShape>;
  /** Primary key column names in key order; empty when there is none. */
  primaryKey: string[];
}

const SHAPE_SQL = `
select c.oid::int8 as oid, c.relkind::text as relkind, format('%I.%I', n.nspname, c.relname) as name,
       coalesce((select json_agg(json_build_object(
                          'name', a.attname,
                          'type', format_type(a.atttypid, a.atttypmod),
                          'castType', format_type(a.atttypid, -1),
                          'generated', a.attgenerated <> '',
                          'identityAlways', a.attidentity = 'a') order by a.attnum)
                   from pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]') as columns,
       coalesce((select json_agg(a.attname order by array_position(i.indkey::int2[], a.attnum))
                   from pg_index i
                   join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[])
                  where i.indrelid = c.oid and i.indisprimary), '[]') as primary_key
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.oid = to_regclass($1)`;

interface ShapeRow {
  oid: string;
  relkind: string;
  name: string;
  columns: ColumnShape[];
  primary_key: string[];
}

/** The table's shape, or null when no relation of that name exists. */
export async function readTableShape(db: Queryable, table: string): Promise<TableShape | null> {
  const { rows } = await db.query<ShapeRow>(SHAPE_SQL, [table]);
  const row = rows[0];
  if (!row) return null;
  return {
    requested: table,
    name: row.name,
    oid: Number(row.oid),
    relkind: row.relkind,
    columns: new Map(row.columns.map((c) => [c.name, c])),
    primaryKey: row.primary_key,
  };
}

/** Shapes read at most once per name; create one per transaction. */
export class TableShapeCache {
  private readonly shapes = new Map<string, Promise<TableShape | null>>();

  constructor(private readonly db: Queryable) {}

  get(table: string): Promise<TableShape | null> {
    let shape = this.shapes.get(table);
    if (!shape) {
      shape = readTableShape(this.db, table);
      this.shapes.set(table, shape);
      shape.catch(() => this.shapes.delete(table));
    }
    return shape;
  }

  clear(): void {
    this.shapes.clear();
  }
}
