/**
 * A connection that dies while checked out of a pool, between two
 * statements (a server restart, pg_terminate_backend), must not end the
 * process with an unhandled `error` event (replay once died so): the pool
 * of shared/db/pool-errors.ts reports it, the next statement on that
 * client fails with a connection error, and the pool serves a fresh
 * connection afterwards. An idle connection's death is reported once, as
 * idle.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isConnectionError } from "../../shared/db/failure.ts";
import { handlePoolErrors, type LostWhile } from "../../shared/db/pool-errors.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { waitFor } from "../support/wait.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pool_errors");
});

afterAll(async () => {
  await db?.drop();
});

async function terminate(pid: number): Promise<void> {
  await db.query("select pg_terminate_backend($1)", [pid]);
}

describe("pool connection errors", () => {
  it("a checked-out client whose backend dies is reported, fails its next statement as a connection error, and the pool goes on", async () => {
    const reports: Array<{ message: string; lostWhile: LostWhile }> = [];
    const pool = handlePoolErrors(new pg.Pool({ connectionString: db.url, max: 2 }), (error, lostWhile) =>
      reports.push({ message: error.message, lostWhile }),
    );
    const client = await pool.connect();
    let released = false;
    try {
      const { rows } = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
      await terminate(rows[0]!.pid);
      await waitFor(() => reports.length > 0, { what: "the lost connection reported" });
      expect(reports).toEqual([{ message: expect.stringContaining("terminating connection"), lostWhile: "in use" }]);
      const failed = await client.query("select 1").then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(isConnectionError(failed)).toBe(true);
      client.release(failed as Error);
      released = true;
      expect((await pool.query<{ one: number }>("select 1 as one")).rows).toEqual([{ one: 1 }]);

      // Idle in the pool: reported once, as idle.
      const idle = await pool.connect();
      const idlePid = (await idle.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
      idle.release();
      reports.length = 0;
      await terminate(idlePid);
      await waitFor(() => reports.length > 0, { what: "the idle connection's loss reported" });
      expect(reports).toEqual([{ message: expect.stringContaining("terminating connection"), lostWhile: "idle" }]);
      expect((await pool.query<{ one: number }>("select 1 as one")).rows).toEqual([{ one: 1 }]);
    } finally {
      if (!released) client.release(true);
      await pool.end();
    }
  });
});
