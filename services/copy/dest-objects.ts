/**
 * The subscriber table's indexes and constraints around the COPY (state
 * in-copy of docs/protocols.md, "Initial copy and the handover to replay",
 * with the fkey handling of Skytools 2.1.5; foreign keys as in
 * docs/differences-from-skytools.md, "The copy and the handover"):
 * loading rows into a table without them and building them once
 * afterwards is much faster, and a table that other tables' foreign keys
 * point at cannot be truncated.
 *
 *  - primary key, unique, check and exclusion constraints and the other
 *    indexes are dropped and recreated, by name and definition, in the
 *    copy's transaction;
 *  - foreign keys of the table and foreign keys of other tables pointing at
 *    it are dropped and parked in londiste.subscriber_pending_fkeys; they
 *    come back (validated) when both of their tables are ok, restored by
 *    the copy that finishes last (restorePendingForeignKeys).
 *
 * Everything runs in the caller's transaction: a copy that fails leaves
 * the table as it was. Names come from the catalog and are quoted here.
 */
import { ADVISORY_LOCKS } from "../../shared/db/advisory-locks.ts";
import type pg from "pg";
import type { Queryable } from "../../shared/db/queryable.ts";
import { quoteIdent } from "../../shared/db/sql-text.ts";

export interface SavedConstraint {
  name: string;
  definition: string;
}

export interface SavedIndex {
  /** Schema-qualified, quoted. */
  qualifiedName: string;
  name: string;
  /** pg_get_indexdef: the whole CREATE INDEX statement. */
  definition: string;
  clustered: boolean;
}

export interface PendingForeignKey {
  name: string;
  /** The table holding the constraint (schema.table, quoted where needed). */
  from: string;
  /** The table it points at. */
  to: string;
  definition: string;
}

export interface DestObjects {
  constraints: SavedConstraint[];
  indexes: SavedIndex[];
  foreignKeys: PendingForeignKey[];
}

async function foreignKeysOf(client: Queryable, oid: number): Promise<PendingForeignKey[]> {
  const { rows } = await client.query<PendingForeignKey>(
    `select c.conname as name,
            format('%I.%I', fn.nspname, f.relname) as "from",
            format('%I.%I', tn.nspname, t.relname) as "to",
            pg_get_constraintdef(c.oid) as definition
       from pg_constraint c
       join pg_class f on f.oid = c.conrelid join pg_namespace fn on fn.oid = f.relnamespace
       join pg_class t on t.oid = c.confrelid join pg_namespace tn on tn.oid = t.relnamespace
      where c.contype = 'f' and c.conparentid = 0 and (c.conrelid = $1 or c.confrelid = $1)
      order by 2, 1`,
    [oid],
  );
  return rows;
}

/**
 * Locks the table and every table a foreign key links it with, always in
 * the same order (by name), before the catalog is read for what to drop:
 * two copies of linked tables then run one after the other instead of
 * deadlocking or dropping the same foreign key twice. Returns the table's
 * foreign keys as they are once the locks are held.
 */
async function lockLinkedTables(client: Queryable, dest: { name: string; oid: number }): Promise<PendingForeignKey[]> {
  const locked = new Set<string>();
  for (;;) {
    const foreignKeys = await foreignKeysOf(client, dest.oid);
    const wanted = [...new Set([dest.name, ...foreignKeys.flatMap((fk) => [fk.from, fk.to])])].filter((t) => !locked.has(t)).sort();
    if (wanted.length === 0) return foreignKeys;
    await client.query(`lock table ${wanted.join(", ")} in access exclusive mode`);
    for (const t of wanted) locked.add(t);
  }
}

/** Reads the table's indexes and constraints, drops them, parks its foreign keys. */
export async function setAsideDestObjects(client: Queryable, dest: { name: string; oid: number }): Promise<DestObjects> {
  const foreignKeys = await lockLinkedTables(client, dest);
  // Primary key first, so that it is recreated before anything else.
  const { rows: constraints } = await client.query<SavedConstraint>(
    `select c.conname as name, pg_get_constraintdef(c.oid) as definition
       from pg_constraint c
      where c.conrelid = $1 and c.contype in ('p', 'u', 'c', 'x') and c.conparentid = 0 and c.conislocal
      order by c.contype = 'p' desc, c.conname`,
    [dest.oid],
  );
  const { rows: indexes } = await client.query<SavedIndex>(
    `select format('%I.%I', n.nspname, ic.relname) as "qualifiedName", ic.relname as name,
            pg_get_indexdef(i.indexrelid) as definition, i.indisclustered as clustered
       from pg_index i
       join pg_class ic on ic.oid = i.indexrelid join pg_namespace n on n.oid = ic.relnamespace
      where i.indrelid = $1
        and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.conrelid = i.indrelid)
        and not exists (select 1 from pg_inherits h where h.inhrelid = i.indexrelid)
      order by ic.relname`,
    [dest.oid],
  );

  for (const fk of foreignKeys) {
    await client.query(
      `insert into londiste.subscriber_pending_fkeys (from_table, to_table, fkey_name, fkey_def) values ($1, $2, $3, $4)
       on conflict (from_table, fkey_name) do update set to_table = excluded.to_table, fkey_def = excluded.fkey_def`,
      [fk.from, fk.to, fk.name, fk.definition],
    );
    await client.query(`alter table ${fk.from} drop constraint ${quoteIdent(fk.name)}`);
  }
  for (const c of constraints) await client.query(`alter table ${dest.name} drop constraint ${quoteIdent(c.name)}`);
  for (const i of indexes) await client.query(`drop index ${i.qualifiedName}`);
  return { constraints, indexes, foreignKeys };
}

/** Recreates the dropped constraints and indexes (not the parked foreign keys). */
export async function recreateDestObjects(client: Queryable, destName: string, saved: DestObjects): Promise<void> {
  for (const c of saved.constraints) await client.query(`alter table ${destName} add constraint ${quoteIdent(c.name)} ${c.definition}`);
  for (const i of saved.indexes) {
    await client.query(i.definition);
    if (i.clustered) await client.query(`alter table ${destName} cluster on ${quoteIdent(i.name)}`);
  }
}

export interface RestoreOutcome {
  restored: PendingForeignKey[];
  /** Still parked: adding them failed (e.g. rows without a match), with the reason. */
  failed: Array<PendingForeignKey & { error: string }>;
}

/**
 * Adds back the parked foreign keys whose two tables are both settled:
 * ok, or not replicated into this subscriber at all. Each in a savepoint:
 * one that does not validate stays parked (listed by `subscriber fkeys`)
 * and the others still come back.
 *
 * Call it after writing the table's own ok, in the same transaction. The
 * lock makes two copies that finish at the same time take turns, and the
 * second one sees the first one's ok (committed when it let go of the
 * lock): without it each would see the other still in do-sync and leave
 * their common foreign key parked for good.
 */
export async function restorePendingForeignKeys(client: pg.ClientBase): Promise<RestoreOutcome> {
  await client.query("select pg_advisory_xact_lock($1, 0)", [ADVISORY_LOCKS.pendingFkeys.classId]);
  const { rows } = await client.query<PendingForeignKey>(
    `select p.fkey_name as name, p.from_table as "from", p.to_table as "to", p.fkey_def as definition
       from londiste.subscriber_pending_fkeys p
      where not exists (select 1 from londiste.subscriber_table s
                         where coalesce(s.dest_table, s.table_name) in (p.from_table, p.to_table)
                           and s.merge_state is distinct from 'ok')
      order by p.from_table, p.fkey_name
      for update of p`,
  );
  const outcome: RestoreOutcome = { restored: [], failed: [] };
  for (const fk of rows) {
    await client.query("savepoint londiste_fkey");
    try {
      await client.query(`alter table ${fk.from} add constraint ${quoteIdent(fk.name)} ${fk.definition}`);
      await client.query("delete from londiste.subscriber_pending_fkeys where from_table = $1 and fkey_name = $2", [fk.from, fk.name]);
      await client.query("release savepoint londiste_fkey");
      outcome.restored.push(fk);
    } catch (error) {
      await client.query("rollback to savepoint londiste_fkey");
      const code = (error as { code?: string }).code ?? "";
      // Only data problems keep it parked; a lost connection or the like fails the whole step.
      if (!["22", "23", "42"].includes(code.slice(0, 2))) throw error;
      outcome.failed.push({ ...fk, error: (error as Error).message });
    }
  }
  return outcome;
}
