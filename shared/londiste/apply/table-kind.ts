/**
 * What grouping may do with a subscriber table, read from the catalog once
 * per table shape (so per transaction, like the shapes).
 *
 * quiet: no trigger or rule fires in replica mode (ENABLE ALWAYS/REPLICA),
 * so a multi-row statement has no effect beyond its rows. commutes: also a
 * plain table whose only unique index (or exclusion constraint) is its
 * primary key, on columns whose text is one spelling per value (integers,
 * text types with a deterministic collation, uuid, bool, date, timestamps,
 * bytea, enums), so changes to different rows can be applied in any order
 * (inserts too, unless insertOrder).
 */
import type { Queryable } from "../../db/queryable.ts";
import type { TableShape } from "../table-shape.ts";

export interface TableKind {
  quiet: boolean;
  commutes: boolean;
  /** A column has a default or is an identity: inserts may fill it in their order (a sequence), so keep it. */
  insertOrder: boolean;
}

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

/** The table's kind; read once per shape. */
export function tableKind(db: Queryable, shape: TableShape): Promise<TableKind> {
  let kind = TABLE_KINDS.get(shape);
  if (!kind) {
    kind = db.query<{ quiet: boolean; keyed: boolean; defaults: boolean }>(TABLE_KIND_SQL, [shape.oid]).then(({ rows }) => ({
      quiet: rows[0]?.quiet === true,
      commutes: rows[0]?.quiet === true && rows[0]?.keyed === true,
      insertOrder: rows[0]?.defaults !== false,
    }));
    TABLE_KINDS.set(shape, kind);
  }
  return kind;
}
