/**
 * What compare/repair need to know about a table on one side, with one
 * catalog query: canonical name, live columns (type as SQL, base type,
 * generated, identity, whether the column sorts bytewise) and primary key.
 * The name goes in as a bind parameter (to_regclass) only. Run it under
 * the pinned settings (search_path = pg_catalog), so format_type
 * qualifies every type outside pg_catalog.
 */
import type { Queryable } from "../../db/queryable.ts";

export interface DescribedColumn {
  name: string;
  /** format_type with the typmod, for messages. */
  type: string;
  /** format_type without typmod: what literals are cast to. */
  castType: string;
  /** oid of the base type (through one level of domain). */
  baseTypeOid: number;
  /** The type has a collation (text-like). */
  collatable: boolean;
  /** The column's collation orders bytewise already (C or POSIX, or a default that is). */
  byteOrdered: boolean;
  generated: boolean;
  identityAlways: boolean;
}

export interface DescribedTable {
  /** Canonical quoted `schema.table`. */
  name: string;
  relkind: string;
  /** Live columns in attnum order. */
  columns: DescribedColumn[];
  /** Primary key column names in key order; empty when none. */
  primaryKey: string[];
}

const DESCRIBE_SQL = `
select pg_catalog.format('%I.%I', n.nspname, c.relname) as name, c.relkind::text as relkind,
       coalesce((select pg_catalog.json_agg(pg_catalog.json_build_object(
                          'name', a.attname,
                          'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                          'castType', pg_catalog.format_type(a.atttypid, -1),
                          'baseTypeOid', case when t.typtype = 'd' then t.typbasetype else t.oid end,
                          'collatable', a.attcollation <> 0,
                          'byteOrdered', case when a.attcollation = 0 then true
                                              when a.attcollation = 100 then
                                                   (select d.datcollate in ('C', 'POSIX') from pg_catalog.pg_database d
                                                     where d.datname = pg_catalog.current_database())
                                              else coalesce((select co.collprovider = 'c' and co.collcollate in ('C', 'POSIX')
                                                               from pg_catalog.pg_collation co where co.oid = a.attcollation), false)
                                         end,
                          'generated', a.attgenerated <> '',
                          'identityAlways', a.attidentity = 'a') order by a.attnum)
                   from pg_catalog.pg_attribute a
                   join pg_catalog.pg_type t on t.oid = a.atttypid
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]') as columns,
       coalesce((select pg_catalog.json_agg(a.attname order by pg_catalog.array_position(i.indkey::int2[], a.attnum))
                   from pg_catalog.pg_index i
                   join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[])
                  where i.indrelid = c.oid and i.indisprimary), '[]') as primary_key
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.oid = pg_catalog.to_regclass($1)`;

/** The table, or null when there is no relation of that name. */
export async function describeTable(db: Queryable, table: string): Promise<DescribedTable | null> {
  const { rows } = await db.query<{ name: string; relkind: string; columns: DescribedColumn[]; primary_key: string[] }>(DESCRIBE_SQL, [table]);
  const row = rows[0];
  if (!row) return null;
  return { name: row.name, relkind: row.relkind, columns: row.columns, primaryKey: row.primary_key };
}
