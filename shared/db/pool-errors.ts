/**
 * No lost connection may end a process: pg emits `error` on a client whose
 * connection fails while no statement runs on it, and an `error` event
 * nobody listens to throws. pg-pool listens on its idle clients (and passes
 * the error on as the pool's own `error` event), but not on a client
 * checked out with pool.connect(): between two statements of a transaction
 * (replay waiting for the provider while it holds a subscriber session, for
 * one) a server restart then killed the process. This gives every client of
 * a pool a listener while it is checked out, and the pool one for its idle
 * clients. The listener only reports: the next statement on the client
 * fails with a connection error, and the caller's loop rolls back and
 * retries with backoff (shared/db/failure.ts: transient).
 */
import type pg from "pg";

/** Where the failed connection was: idle in the pool, or checked out by a caller. */
export type LostWhile = "idle" | "in use";

export function handlePoolErrors<P extends pg.Pool>(pool: P, report: (error: Error, lostWhile: LostWhile) => void): P {
  const checkedOut = new WeakSet<pg.PoolClient>();
  pool.on("error", (error) => report(error, "idle"));
  pool.on("acquire", (client) => checkedOut.add(client));
  pool.on("release", (_error, client) => checkedOut.delete(client));
  pool.on("connect", (client) => {
    let reported = false;
    client.on("error", (error) => {
      // An idle client's error is the pool's `error` event above. A dying connection may say so twice
      // (the server's FATAL, then the closed socket): the first says why.
      if (!checkedOut.has(client) || reported) return;
      reported = true;
      report(error, "in use");
    });
  });
  return pool;
}
