/**
 * londiste.tick_at_snapshot and the consistent point it gives, in SQL on
 * a real database (no services): its checks (REPEATABLE READ, the ticker
 * lock held by this session, a tick id after the last one and handed out
 * by the queue's sequence); the tick records exactly the snapshot a second
 * connection imported, so a reader sees exactly the changes of the batches
 * up to the tick, also with transactions in flight; and Postgres orders
 * keys under collation "C" the way the merge compares them.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyComparator, keyKind } from "../../shared/londiste/compare/key-order.ts";
import { textRows } from "../../shared/londiste/compare/row-source.ts";
import { installLondiste } from "../../shared/londiste/install.ts";
import { createQueue, installPgq, insertEvent } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
let qid: number;
const QUEUE = "snapq";

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  return c;
}

async function lastTick(): Promise<number> {
  const { rows } = await db.query<{ t: string }>("select max(tick_id) as t from pgq.tick where tick_queue = $1", [qid]);
  return Number(rows[0]!.t);
}

beforeAll(async () => {
  db = await createTestDatabase("reptick");
  await installPgq(db.pool);
  await installLondiste(db.pool);
  await createQueue(db.pool, QUEUE);
  qid = (await db.query<{ queue_id: number }>("select queue_id from pgq.queue where queue_name = $1", [QUEUE])).rows[0]!.queue_id;
  await db.query("select pgq.ticker($1)", [QUEUE]);
  await db.query("create table t (id int primary key, v text)");
});

afterAll(async () => {
  await db?.drop();
});

describe("londiste.tick_at_snapshot", () => {
  it("refuses outside REPEATABLE READ, without the session's ticker lock, and tick ids that are not new", async () => {
    const a = await client();
    try {
      await expect(a.query("select londiste.tick_at_snapshot($1)", [QUEUE])).rejects.toThrow(
        "londiste.tick_at_snapshot must run in REPEATABLE READ, not read committed",
      );
      await a.query("begin isolation level repeatable read");
      await expect(a.query("select londiste.tick_at_snapshot($1)", [QUEUE])).rejects.toThrow(/must hold the ticker lock of queue snapq/);
      await a.query("rollback");
      await a.query("select pg_advisory_lock(1886482801, $1)", [qid]);
      const last = await lastTick();
      await a.query("begin isolation level repeatable read");
      await expect(a.query("select londiste.tick_at_snapshot($1, $2)", [QUEUE, last])).rejects.toThrow(`tick id ${last} is not after the last tick ${last}`);
      await a.query("rollback");
      await a.query("begin isolation level repeatable read");
      await expect(a.query("select londiste.tick_at_snapshot($1, $2)", [QUEUE, last + 1000])).rejects.toThrow(/was not handed out by/);
      await a.query("rollback");
      await a.query("begin isolation level repeatable read");
      await expect(a.query("select londiste.tick_at_snapshot($1)", ["nosuch"])).rejects.toThrow("no such queue");
      await a.query("rollback");
      await a.query("select pg_advisory_unlock(1886482801, $1)", [qid]);
    } finally {
      await a.end();
    }
  });

  it("the tick records the reader's snapshot: the reader sees exactly the batches up to it, with transactions in flight", async () => {
    const a = await client();
    const reader = await client();
    const early = await client();
    const late = await client();
    try {
      await db.query("insert into t values (1, 'before')");
      await insertEvent(db.pool, QUEUE, { type: "I", data: "1" });
      // A transaction that started before the point and commits after it.
      await early.query("begin");
      await early.query("insert into t values (2, 'in flight')");
      await insertEvent(early, QUEUE, { type: "I", data: "2" });

      await a.query("select pg_advisory_lock(1886482801, $1)", [qid]);
      const tick = Number((await a.query("select nextval(queue_tick_seq) as t from pgq.queue where queue_id = $1", [qid])).rows[0].t);
      await a.query("begin isolation level repeatable read");
      const snap = (await a.query("select pg_export_snapshot() as s")).rows[0].s as string;
      await reader.query("begin isolation level repeatable read read only");
      await reader.query(`set transaction snapshot '${snap}'`);
      // Committed after the snapshot: not visible to the reader, in a later batch.
      await late.query("begin");
      await late.query("insert into t values (3, 'after')");
      await insertEvent(late, QUEUE, { type: "I", data: "3" });
      await late.query("commit");
      await early.query("commit");
      expect(Number((await a.query("select londiste.tick_at_snapshot($1, $2) as t", [QUEUE, tick])).rows[0].t)).toBe(tick);
      const readerSnap = (await reader.query("select pg_current_snapshot()::text as s")).rows[0].s;
      await a.query("commit");
      await a.query("select pg_advisory_unlock(1886482801, $1)", [qid]);

      const recorded = (await db.query("select tick_snapshot::text as s from pgq.tick where tick_queue = $1 and tick_id = $2", [qid, tick])).rows[0].s;
      expect(recorded).toBe(readerSnap);
      expect((await reader.query("select id from t order by id")).rows.map((r) => r.id)).toEqual([1]);

      // The events of the batches up to the tick are exactly those the reader sees.
      const { rows } = await db.query<{ data: string; visible: boolean }>(
        `select ev_data as data, pg_visible_in_snapshot(ev_txid::text::xid8, $1::pg_snapshot) as visible from pgq.event_${qid} order by ev_id`,
        [recorded],
      );
      expect(rows).toEqual([
        { data: "1", visible: true },
        { data: "2", visible: false },
        { data: "3", visible: false },
      ]);
      // The ticker goes on after it: its next tick is later.
      await db.query("select pgq.force_tick($1)", [QUEUE]);
      await db.query("select pgq.ticker($1)", [QUEUE]);
      expect(await lastTick()).toBeGreaterThan(tick);
      await reader.query("rollback");
    } finally {
      await Promise.all([a.end(), reader.end(), early.end(), late.end()]);
    }
  });

  it("a ticker waits for the session lock, so no tick lands between the lock and the point", async () => {
    const a = await client();
    const ticker = await client();
    try {
      await a.query("select pg_advisory_lock(1886482801, $1)", [qid]);
      await db.query("select pgq.force_tick($1)", [QUEUE]);
      let ticked = false;
      const waiting = ticker.query("select pgq.ticker($1)", [QUEUE]).then(() => (ticked = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(ticked).toBe(false);
      await a.query("begin isolation level repeatable read");
      const tick = Number((await a.query("select londiste.tick_at_snapshot($1) as t", [QUEUE])).rows[0].t);
      await a.query("commit");
      await a.query("select pg_advisory_unlock(1886482801, $1)", [qid]);
      await waiting;
      // The waiting ticker found our tick the latest (no new events since): ticking goes on from there.
      await db.query("select pgq.force_tick($1)", [QUEUE]);
      await db.query("select pgq.ticker($1)", [QUEUE]);
      expect(await lastTick()).toBeGreaterThan(tick);
      // Snapshots never go back as tick ids grow.
      const { rows } = await db.query(
        `select a.tick_id from pgq.tick a join pgq.tick b on b.tick_queue = a.tick_queue and b.tick_id > a.tick_id
          where a.tick_queue = $1 and (pg_snapshot_xmax(b.tick_snapshot) < pg_snapshot_xmax(a.tick_snapshot)
                                       or pg_snapshot_xmin(b.tick_snapshot) < pg_snapshot_xmin(a.tick_snapshot))`,
        [qid],
      );
      expect(rows).toEqual([]);
    } finally {
      await Promise.all([a.end(), ticker.end()]);
    }
  });
});

describe("key order agrees with Postgres", () => {
  it("order by ... collate \"C\" sorts text, integers, uuids and booleans as the merge compares them", async () => {
    const words = ["", " ", "Zeta", "zeta", "a", "ä", "é", "e", "Ω", "日本", "🐘", "\u0001", "ab", "a b", "B", "b", "~", "\u007f", "ß", "ss"];
    const ints = ["-9223372036854775808", "-10", "-9", "0", "9", "10", "100", "9223372036854775807"];
    const uuids = ["00000000-0000-0000-0000-000000000000", "0a000000-0000-0000-0000-000000000000", "a0000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"];
    const cases: Array<[string, string[], number]> = [
      ["text", words, 25],
      ["int8", ints, 20],
      ["uuid", uuids, 2950],
      ["bool", ["t", "f"], 16],
    ];
    for (const [type, values, oid] of cases) {
      // The values as the merge gets them: the types' text output.
      const rows = await textRows(db.pool, {
        text: `select u.x from unnest($1::${type}[]) u(x) order by u.x${type === "text" ? ' collate "C"' : ""}`,
        values: [values],
      });
      const cmp = new KeyComparator([keyKind(oid)]);
      const ours = [...values].sort((a, b) => cmp.compare([a], [b]) as number);
      expect(ours.map((v) => (type === "bool" ? v[0] : v)), type).toEqual(rows.map((r) => r[0]));
    }
  });
});
