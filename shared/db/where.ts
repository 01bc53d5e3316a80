/**
 * Which database a connection failure is about, in words an operator can
 * act on: "the subscriber database at db2:5432/app". Failures to connect
 * carry it in their message (the error code stays, so the failure taxonomy
 * still classifies them); the password never appears.
 */
import pg from "pg";

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

/**
 * A pg.Client class for a pool whose connect errors say which database
 * they are about: `<side> database at <host:port/db>: <reason>`.
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
  return NamingClient;
}
