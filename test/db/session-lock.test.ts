/**
 * SessionLock (shared/db/session-lock.ts), the "one active instance" lock of
 * replay and the ticker, and its fence: assertHeld, run on another session,
 * passes while the lock session holds the lock and throws SessionLockLost
 * once the server ended that session, although the instance was never told
 * (a paused or cut-off process), and after another instance took the lock.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionLock, SessionLockLost } from "../../shared/db/session-lock.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
const KEY: [number, number] = [1886482804, -12345];

beforeAll(async () => {
  db = await createTestDatabase("session_lock");
});

afterAll(async () => {
  await db.drop();
});

describe("SessionLock.assertHeld", () => {
  it("passes while held; throws once the server ended the lock session and a second instance took the lock", async () => {
    const a = new SessionLock({ connectionString: db.url, application_name: "lock a" }, KEY);
    const b = new SessionLock({ connectionString: db.url, application_name: "lock b" }, KEY);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      expect(await a.tryAcquire()).toBe(true);
      expect(await b.tryAcquire()).toBe(false);
      await a.assertHeld(other, "a");
      // The server ends a's lock session (as keepalive does for a vanished host); a is not told.
      const { rows } = await db.query<{ ok: boolean }>(
        "select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = 'lock a' and datname = current_database()",
      );
      expect(rows).toEqual([{ ok: true }]);
      // b takes the lock as soon as the session is gone.
      let taken = false;
      for (let i = 0; i < 100 && !taken; i++) {
        taken = await b.tryAcquire();
        if (!taken) await new Promise((r) => setTimeout(r, 50));
      }
      expect(taken).toBe(true);
      await b.assertHeld(other, "b");
      await expect(a.assertHeld(other, "a")).rejects.toBeInstanceOf(SessionLockLost);
      await expect(a.assertHeld(other, "a")).rejects.toThrow(/no longer holds the lock/);
    } finally {
      await other.end();
      await a.close();
      await b.close();
    }
  });

  it("reads the server, not the process's belief: a lock gone from the live session fails the check", async () => {
    const a = new SessionLock({ connectionString: db.url }, KEY);
    try {
      expect(await a.tryAcquire()).toBe(true);
      await a.assertHeld(db.pool, "a");
      // The session lives on but no longer holds the lock; the instance still believes it does.
      await a.connection.query("select pg_advisory_unlock($1, $2)", KEY);
      expect(a.isHeld).toBe(true);
      await expect(a.assertHeld(db.pool, "a")).rejects.toBeInstanceOf(SessionLockLost);
      expect(a.isHeld).toBe(false);
    } finally {
      await a.close();
    }
  });

  it("throws when the lock was never taken", async () => {
    const a = new SessionLock({ connectionString: db.url }, KEY);
    await expect(a.assertHeld(db.pool, "a")).rejects.toBeInstanceOf(SessionLockLost);
  });
});
