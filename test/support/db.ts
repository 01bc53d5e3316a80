/**
 * Helpers for test files: the server URLs resolved by global-setup.ts, throwaway databases and
 * unique NATS names, so test files can run in parallel without seeing each other's data.
 *
 *   const db = await createTestDatabase("pgq_batch");
 *   afterAll(() => db.drop());
 *   await db.query("select 1");
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { machineSleep } from "./wait.ts";

/** Maintenance database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres). */
export function databaseUrl(): string {
  return inject("databaseUrl");
}

/** NATS server URL; JetStream is enabled there. */
export function natsUrl(): string {
  return inject("natsUrl");
}

/** `url` with its database name replaced by `database`. */
export function urlForDatabase(database: string, url: string = databaseUrl()): string {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(database);
  return u.toString();
}

/**
 * A unique lowercase name `<label>_<12 hex>`, usable unquoted as a Postgres identifier (≤ 63 bytes)
 * and as a NATS stream/consumer name or subject token: anything but [a-z0-9_] in the label becomes `_`.
 */
export function uniqueName(label: string): string {
  let base = label.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  if (!/^[a-z_]/.test(base)) base = "t_" + base;
  return `${base.slice(0, 48).replace(/_+$/, "")}_${randomBytes(6).toString("hex")}`;
}

/** A unique subject prefix `test.<label>_<hex>`; build subjects under it, e.g. `${prefix}.events`. */
export function uniqueSubjectPrefix(label: string): string {
  return `test.${uniqueName(label)}`;
}

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface TestDatabase {
  /** Database name (unique per call). */
  readonly name: string;
  /** Connection URL of this database. */
  readonly url: string;
  /** Pool on this database; ended by drop(). */
  readonly pool: pg.Pool;
  /** Shorthand for pool.query. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /**
   * Ends the pool, disconnects any other session on the database and drops it. Safe to call
   * twice. A client a test never released cannot hold it up: the pool gets 15 s to end.
   */
  drop(): Promise<void>;
}

/**
 * Creates an empty database named after `label` plus a random suffix, with a pool on it; on
 * the shared server, or on the one whose maintenance URL is `serverUrl` (a private cluster).
 */
export async function createTestDatabase(label = "test", serverUrl: string = databaseUrl()): Promise<TestDatabase> {
  const name = uniqueName(label);
  await adminQuery(`create database ${quoteIdent(name)}`, undefined, serverUrl);
  const url = urlForDatabase(name, serverUrl);
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  pool.on("error", () => {}); // idle clients killed by drop() must not crash the worker
  let dropped: Promise<void> | undefined;
  return {
    name,
    url,
    pool,
    query: (sql, params) => pool.query(sql, params),
    drop: () =>
      (dropped ??= (async () => {
        // pool.end() waits for checked-out clients; the forced drop below ends those anyway.
        await Promise.race([pool.end().catch(() => {}), machineSleep(15_000)]);
        // `with (force)` (PG 13+) terminates the sessions still connected, e.g. services under test.
        await adminQuery(`drop database if exists ${quoteIdent(name)} with (force)`, undefined, serverUrl);
      })()),
  };
}

/** Runs one statement on the maintenance database (of `serverUrl`, default the shared server) with a short-lived connection. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params?: unknown[],
  serverUrl: string = databaseUrl(),
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: serverUrl });
  client.on("error", () => {}); // a private cluster restarted meanwhile: the query reports it
  await client.connect();
  try {
    return await client.query<R>(sql, params);
  } finally {
    await client.end();
  }
}
