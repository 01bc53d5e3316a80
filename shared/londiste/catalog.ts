/**
 * Reads of londiste's registrations and of the catalog facts its commands
 * need, one small query each. Names go in as bind parameters only.
 */
import type { Queryable } from "../db/queryable.ts";
import { loadTableSyncs } from "./sync-store.ts";
import type { TriggerInfo } from "./table-check.ts";

export interface SubscriberTable {
  table: string;
  /** NULL (none), in-copy, catching-up, wanna-sync:<tick>, do-sync:<tick>, ok, error. */
  state: string | null;
  snapshot: string | null;
  skipTruncate: boolean;
  /** The subscriber table written (table when not redirected). */
  dest: string;
  lastError: string | null;
  errorTime: Date | null;
  /** The copy worker holding the table, while a copy runs. */
  leaseOwner: string | null;
  /** The copy's last progress report (rows, bytes, mb_per_s, eta_s, ...). */
  copyProgress: Record<string, unknown> | null;
}

/** The subscriber's tables for listing, from the sync store's read of their rows. */
export async function subscriberTables(db: Queryable, queue: string): Promise<SubscriberTable[]> {
  return (await loadTableSyncs(db, queue)).map((t) => ({
    table: t.table,
    state: t.stateText,
    snapshot: t.snapshot,
    skipTruncate: t.skipTruncate,
    dest: t.dest,
    lastError: t.lastError,
    errorTime: t.errorTime,
    leaseOwner: t.leaseOwner,
    copyProgress: t.copyProgress,
  }));
}

export async function providerTables(db: Queryable, queue: string): Promise<string[]> {
  const { rows } = await db.query<{ table_name: string }>("select table_name from londiste.provider_get_table_list($1)", [queue]);
  return rows.map((r) => r.table_name);
}

export async function providerSeqs(db: Queryable, queue: string): Promise<string[]> {
  const { rows } = await db.query<{ s: string }>("select s from londiste.provider_get_seq_list($1) s", [queue]);
  return rows.map((r) => r.s);
}

export async function subscriberSeqs(db: Queryable, queue: string): Promise<string[]> {
  const { rows } = await db.query<{ s: string }>("select s from londiste.subscriber_get_seq_list($1) s", [queue]);
  return rows.map((r) => r.s);
}

/** The canonical `schema.table` form of a name (no schema means public); throws 'bad name' on junk. */
export async function canonicalName(db: Queryable, name: string): Promise<string> {
  const { rows } = await db.query<{ n: string }>("select londiste.canonical_name($1) as n", [name]);
  return rows[0]!.n;
}

/** Triggers on a table (empty when there is no such table). */
export async function tableTriggers(db: Queryable, table: string): Promise<TriggerInfo[]> {
  const { rows } = await db.query<{ name: string; internal: boolean; enabled: string }>(
    `select tgname as name, tgisinternal as internal, tgenabled::text as enabled
       from pg_trigger where tgrelid = to_regclass($1) order by tgname`,
    [table],
  );
  return rows;
}

export interface ForeignKey {
  name: string;
  /** Table holding the constraint (canonical). */
  from: string;
  /** Referenced table (canonical). */
  to: string;
  definition: string;
}

/** Foreign keys from or to any of the given tables. */
export async function foreignKeysTouching(db: Queryable, tables: string[]): Promise<ForeignKey[]> {
  const { rows } = await db.query<ForeignKey>(
    `select c.conname as name,
            format('%I.%I', fn.nspname, f.relname) as "from",
            format('%I.%I', tn.nspname, t.relname) as "to",
            pg_get_constraintdef(c.oid) as definition
       from pg_constraint c
       join pg_class f on f.oid = c.conrelid join pg_namespace fn on fn.oid = f.relnamespace
       join pg_class t on t.oid = c.confrelid join pg_namespace tn on tn.oid = t.relnamespace
      where c.contype = 'f'
        and (c.conrelid = any (select to_regclass(x) from unnest($1::text[]) x)
             or c.confrelid = any (select to_regclass(x) from unnest($1::text[]) x))
      order by 2, 1`,
    [tables],
  );
  return rows;
}
