/**
 * Which database a connection failure is about, in words an operator can
 * act on: "the subscriber database at db2:5432/app". Failures to connect
 * carry it in their message (the error code stays, so the failure taxonomy
 * still classifies them); the password never appears. Statements refused for
 * a missing privilege carry the GRANT to add (failure.ts, privilegeHint).
 */
import pg from "pg";
import { withPrivilegeHint } from "./failure.ts";

/** host:port/database of a pg config (connection string or keywords; libpq defaults where unset). */
export function databaseAddress(config: pg.ClientConfig): string {
  let host = config.host ?? process.env.PGHOST;
  let port: string | number | undefined = config.port ?? process.env.PGPORT;
  let database = config.database ?? process.env.PGDATABASE;
  if (config.connectionString) {
    try {
      const url = new URL(config.connectionString);
      host = decodeURIComponent(url.hostname) || url.searchParams.get("host") || host;
      port = url.port || port;
      database = decodeURIComponent(url.pathname.slice(1)) || database;
    } catch {
      // A connection string that is not a URL was turned into keywords by the config loader.
    }
  }
  return `${host ?? "localhost"}:${port ?? 5432}/${database ?? "(default database)"}`;
}

/** The role a pg config logs in as (libpq defaults where unset). */
export function databaseRole(config: pg.ClientConfig): string {
  let user = config.user ?? process.env.PGUSER;
  if (config.connectionString) {
    try {
      user = decodeURIComponent(new URL(config.connectionString).username) || user;
    } catch {
      // keywords: config.user already
    }
  }
  return user ?? process.env.USER ?? "(the connecting role)";
}

type QueryCallback = (error: Error | null, result: unknown) => void;

/**
 * A pg.Client class for a pool whose connect errors say which database
 * they are about: `<side> database at <host:port/db>: <reason>`, and whose
 * statements refused for a missing privilege say which GRANT to add.
 */
export function clientNaming(side: string, config: pg.ClientConfig): typeof pg.Client {
  const where = `${side} database at ${databaseAddress(config)}`;
  const name = (error: unknown) => {
    if (error instanceof Error && !error.message.startsWith(where)) error.message = `${where}: ${error.message}`;
    return error;
  };
  class NamingClient extends pg.Client {}
  const connect = NamingClient.prototype.connect as (this: pg.Client, callback?: (error: Error | null) => void) => Promise<void> | void;
  // pg-pool calls connect with a callback; other callers may use the promise.
  NamingClient.prototype.connect = function (this: pg.Client, callback?: (error: Error | null) => void) {
    if (callback) return connect.call(this, (error) => callback(error ? (name(error) as Error) : error));
    return (connect.call(this) as Promise<void>).catch((error: unknown) => {
      throw name(error);
    });
  } as typeof pg.Client.prototype.connect;
  const role = databaseRole(config);
  const query = NamingClient.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown;
  NamingClient.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0] as string | { text?: string } | undefined;
    const statement = typeof first === "string" ? first : first?.text;
    const hint = (error: unknown) => withPrivilegeHint(error, role, statement);
    const last = args[args.length - 1];
    // pg-pool passes a callback; direct callers get a promise; cursors and COPY streams neither.
    if (typeof last === "function") {
      args[args.length - 1] = (error: Error | null, result: unknown) => (last as QueryCallback)(error ? (hint(error) as Error) : error, result);
      return query.apply(this, args);
    }
    const result = query.apply(this, args);
    if (result instanceof Promise) {
      return result.catch((error: unknown) => {
        throw hint(error);
      });
    }
    return result;
  } as typeof pg.Client.prototype.query;
  return NamingClient;
}
