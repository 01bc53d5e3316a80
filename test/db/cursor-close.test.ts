/**
 * A cursor read whose connection dies must end, not hang: pg-cursor's
 * close() waits for a ReadyForQuery that a dead connection never sends, and
 * replay's batch reader waited there forever after a server restart (its
 * batch never retried). closeCursor (shared/db/cursor-close.ts) ends
 * when the connection is gone; on a live connection it closes the portal
 * as before.
 */
import pg from "pg";
import Cursor from "pg-cursor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeCursor } from "../../shared/db/cursor-close.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("cursor_close");
});

afterAll(async () => {
  await db?.drop();
});

/** Settles with what the promise gave, or "hung" when it has not after `ms` (a hang detector, not a timing assertion). */
function settled<T>(promise: Promise<T>, ms: number): Promise<T | "hung"> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), ms)));
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

describe("closeCursor", () => {
  it("ends when the backend was terminated in the middle of a cursor read", async () => {
    const client = new pg.Client({ connectionString: db.url });
    client.on("error", () => {});
    await client.connect();
    try {
      await client.query("begin");
      const { rows } = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
      const cursor = client.query(new Cursor<{ g: number }>("select g from generate_series(1, 100000) g"));
      expect(await cursor.read(10)).toHaveLength(10);
      await db.query("select pg_terminate_backend($1, 5000)", [rows[0]!.pid]);
      await expect(cursor.read(10)).rejects.toThrow();
      expect(await settled(closeCursor(client, cursor).then(() => "closed"), 15_000)).toBe("closed");
    } finally {
      await client.end().catch(() => {});
    }
  });

  it("closes the portal on a live connection, which then serves the next statement", async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query("begin");
      const cursor = client.query(new Cursor<{ g: number }>("select g from generate_series(1, 100000) g"));
      expect(await cursor.read(10)).toHaveLength(10);
      await closeCursor(client, cursor);
      const { rows } = await client.query<{ n: string }>("select count(*) as n from pg_cursors");
      expect(rows[0]!.n).toBe("0");
      await client.query("commit");
    } finally {
      await client.end();
    }
  });
});
