/**
 * Checks shared by the londiste end-to-end tests (torture-e2e, kill-replay):
 * wait until replay has applied everything the provider has committed, dump
 * a table the same way on both sides (text under fixed settings, plus the
 * binary send form of every built-in column) and read the table states the
 * way a user does (`londiste CONF --json subscriber tables`).
 */
import { expect } from "vitest";
import type { TestDatabase } from "../support/db.ts";
import type { LondisteJob } from "./job.ts";
import { type Queryable, waitForTickAfter } from "../support/pgq-state.ts";
import { waitForProgress } from "../support/wait.ts";

/** Fixed settings of every dump session, whatever the database defaults are. */
export const DUMP_SETTINGS =
  "set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; set timezone = 'UTC'; set extra_float_digits = 3; " +
  "set bytea_output = 'hex'; set lc_monetary = 'C'; set search_path = pg_catalog; set standard_conforming_strings = on; " +
  "set array_nulls = on";

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The subscriber's recorded tick of the job's consumer (pgq_consumer_id defaults to job_name). */
export async function subscriberTick(job: LondisteJob): Promise<number | null> {
  const { rows } = await job.subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job.jobName]);
  return rows[0]!.t === null ? null : Number(rows[0]!.t);
}

/**
 * Makes the ticker tick once more after everything committed so far and waits until the
 * subscriber records that tick (or a later one) as applied, for as long as the recorded
 * tick keeps moving (fails after `stallMs` of machine time without a step). Returns the tick.
 */
export async function waitCaughtUp(job: LondisteJob, stallMs?: number): Promise<number> {
  const { rows } = await job.provider.query<{ t: string }>("select pgq.force_tick($1) as t", [job.queue]);
  const tick = await waitForTickAfter(job.provider, job.queue, Number(rows[0]!.t));
  await waitForProgress({
    what: `the subscriber to record tick ${tick}`,
    measure: () => subscriberTick(job),
    done: (t) => t !== null && t >= tick,
    stallMs,
    intervalMs: 50,
  });
  return tick;
}

export interface ColumnInfo {
  name: string;
  /** Qualified name of the type's send function when the type is built in (same on both sides); else null. */
  send: string | null;
}

/** Live columns of a provider table in attnum order, with the send function of built-in types. */
export async function tableColumns(db: Queryable, table: string): Promise<ColumnInfo[]> {
  const { rows } = await db.query<{ name: string; send: string | null }>(
    `select a.attname as name,
            case when a.atttypid < 16384 and t.typtype <> 'c'
                 then format('%I.%I', pn.nspname, p.proname) end as send
       from pg_catalog.pg_attribute a
       join pg_catalog.pg_type t on t.oid = a.atttypid
       join pg_catalog.pg_proc p on p.oid = t.typsend
       join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
      where a.attrelid = pg_catalog.to_regclass($1) and a.attnum > 0 and not a.attisdropped
      order by a.attnum`,
    [table],
  );
  if (rows.length === 0) throw new Error(`no columns for ${table}`);
  return rows;
}

export interface TableDump {
  /** Per row: the columns (provider order) as one record text, under DUMP_SETTINGS. */
  text: string[];
  /** Per row: the hex of each built-in column's send function (NULL as null), then the text of the others. */
  binary: Array<Array<string | null>>;
}

/**
 * Every row of `table` (quoted name) ordered by `keys`: its text form under fixed settings,
 * and byte-exact forms of built-in values (float -0 and NaN bits, bytea, timestamptz
 * microseconds, numeric digits and scale, ...).
 */
export async function dumpTable(db: TestDatabase, table: string, columns: ColumnInfo[], keys: string[]): Promise<TableDump> {
  const client = await db.pool.connect();
  try {
    await client.query(DUMP_SETTINGS);
    const order = keys.map((k) => `w.${ident(k)}`).join(", ");
    const text = await client.query<{ r: string }>(
      `select row(${columns.map((c) => `w.${ident(c.name)}`).join(", ")})::text as r from ${table} w order by ${order}`,
    );
    const binary = await client.query<{ r: Array<string | null> }>(
      `select array[${columns
        .map((c) => (c.send ? `encode(${c.send}(w.${ident(c.name)}), 'hex')` : `w.${ident(c.name)}::text`))
        .join(", ")}]::text[] as r from ${table} w order by ${order}`,
    );
    return { text: text.rows.map((r) => r.r), binary: binary.rows.map((r) => r.r) };
  } finally {
    // The pooled session goes back with its own settings, not the dump's.
    await client.query("reset all").catch(() => {});
    client.release();
  }
}

/** Compares a table on both sides of the job row by row; returns the provider's dump. */
export async function expectTablesEqual(job: LondisteJob, table: string, keys: string[]): Promise<TableDump> {
  const columns = await tableColumns(job.provider, table);
  const [prov, sub] = await Promise.all([dumpTable(job.provider, table, columns, keys), dumpTable(job.subscriber, table, columns, keys)]);
  expect(sub.text.length, `${table}: row count`).toBe(prov.text.length);
  for (let i = 0; i < prov.text.length; i++) {
    expect(sub.text[i], `${table}: row ${i + 1} (text)`).toBe(prov.text[i]);
    expect(sub.binary[i], `${table}: row ${i + 1} (binary)`).toEqual(prov.binary[i]);
  }
  return prov;
}

export interface TableRow {
  table: string;
  state: string | null;
  dest_table: string | null;
  error: string | null;
}

/** `londiste CONF --json subscriber tables`, as a user reads the states. */
export function subscriberTableStates(job: LondisteJob): Promise<TableRow[]> {
  return job.londisteJson<TableRow[]>("subscriber", "tables");
}
