/**
 * The retry mover (docs/differences-from-skytools.md, "The retry mover
 * moves each due event exactly once"). 25 due retries are re-inserted
 * exactly once each (Skytools 2's mover inserted every due row on each
 * call), the retry queue ends empty, and the events
 * come back only to their owner, with the same ids and times and retry
 * count 1. Two movers running at the same time share the rows (SKIP
 * LOCKED) instead of duplicating them.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq, moveRetryEvents } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { allIds, batchRows, Connections, drainAll, num, nums, openBatch, queueId, subId, tick, type Ev } from "./helpers.ts";

let db: TestDatabase;
let conns: Connections;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-retry");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await db?.drop();
});

/**
 * Inserts `n` events (one transaction), delivers them to `owner` and
 * `other`; owner tags all of them for retry at `after` and finishes.
 */
async function retryAll(queue: string, n: number, after = "now() - interval '1 second'"): Promise<Ev[]> {
  await db.query("select pgq.insert_event($1, 'r', g::text, 'x1', 'x2', 'x3', 'x4') from generate_series(1, $2) g", [queue, n]);
  await tick(db.pool, queue);
  expect(allIds(await drainAll(db.pool, queue, "other"))).toHaveLength(n);
  const b = (await openBatch(db.pool, queue, "owner"))!;
  const events = await batchRows(db.pool, b.batchId);
  expect(events).toHaveLength(n);
  const client = await db.pool.connect();
  try {
    await client.query("begin");
    const tagged = await nums(client, `select pgq.event_retry($1, ev_id, ${after}) from pgq.get_batch_events($1)`, [b.batchId]);
    expect(tagged).toEqual(events.map(() => 1));
    expect(await num(client, "select pgq.finish_batch($1)", [b.batchId])).toBe(1);
    await client.query("commit");
  } finally {
    client.release();
  }
  return events;
}

/** Rows of the queue's event tables that are for one owner. */
async function ownedRows(queue: string, owner: number) {
  const qid = await queueId(db.pool, queue);
  const { rows } = await db.query<{ n: number; distinct_ids: number; retry1: number }>(
    `select count(*)::int as n, count(distinct ev_id)::int as distinct_ids,
            count(*) filter (where ev_retry = 1)::int as retry1
       from pgq.event_template where ev_queue = $1 and ev_owner = $2`,
    [qid, owner],
  );
  return rows[0]!;
}

describe("the retry mover", () => {
  it("25 due retries: exactly 25 re-inserted, retry queue empty, back to the owner only with retry 1", async () => {
    await db.query("select pgq.create_queue('rq')");
    await db.query("select pgq.register_consumer('rq', 'owner')");
    await db.query("select pgq.register_consumer('rq', 'other')");
    const owner = await subId(db.pool, "rq", "owner");
    const original = await retryAll("rq", 25);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue where ev_owner = $1 and ev_retry = 1", [owner])).toBe(25);

    expect(await moveRetryEvents(db.pool)).toBe(25);
    expect(await moveRetryEvents(db.pool)).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(0);
    expect(await ownedRows("rq", owner)).toEqual({ n: 25, distinct_ids: 25, retry1: 25 });

    await tick(db.pool, "rq");
    const back = (await drainAll(db.pool, "rq", "owner")).flatMap((b) => b.events);
    expect(back.map((e) => ({ ...e, ev_txid: 0 }))).toEqual(original.map((e) => ({ ...e, ev_txid: 0, ev_retry: 1 })));
    // a new txid: the mover's
    expect(new Set(back.map((e) => e.ev_txid)).size).toBe(1);
    expect(back[0]!.ev_txid).toBeGreaterThan(original[0]!.ev_txid);
    const otherBatches = await drainAll(db.pool, "rq", "other");
    expect(otherBatches).toHaveLength(1);
    expect(allIds(otherBatches)).toEqual([]);
  });

  it("retries that are not due yet stay where they are", async () => {
    await db.query("select pgq.create_queue('rqlater')");
    await db.query("select pgq.register_consumer('rqlater', 'owner')");
    await db.query("select pgq.register_consumer('rqlater', 'other')");
    await retryAll("rqlater", 3, "now() + interval '1 hour'");
    expect(await moveRetryEvents(db.pool)).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue where ev_retry_after > now()")).toBe(3);
    await db.query("update pgq.retry_queue set ev_retry_after = now() - interval '1 second'");
    expect(await moveRetryEvents(db.pool)).toBe(3);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(0);
  });

  it("two movers at once: the second skips the rows the first holds; together each row moves exactly once", async () => {
    await db.query("select pgq.create_queue('rq2')");
    await db.query("select pgq.register_consumer('rq2', 'owner')");
    await db.query("select pgq.register_consumer('rq2', 'other')");
    const owner = await subId(db.pool, "rq2", "owner");
    const original = await retryAll("rq2", 950);
    const [a, b] = await Promise.all([conns.connect("mover-a"), conns.connect("mover-b")]);
    await b.query("set statement_timeout = '10s'"); // a mover that waited on the other's locks would fail here

    await a.query("begin");
    const movedA = (await num(a, "select pgq.maint_retry_events()"))!;
    expect(movedA).toBe(100);
    const movedB = (await num(b, "select pgq.maint_retry_events()"))!; // autocommit, while a holds its rows
    expect(movedB).toBe(100);
    expect(await ownedRows("rq2", owner)).toMatchObject({ n: 100, distinct_ids: 100 }); // a's are not committed
    await a.query("commit");
    expect(await ownedRows("rq2", owner)).toMatchObject({ n: 200, distinct_ids: 200 });

    // now both loop as fast as they can
    const loop = async (c: pg.Client) => {
      let total = 0;
      for (;;) {
        const n = (await num(c, "select pgq.maint_retry_events()"))!;
        if (n === 0) return total;
        total += n;
      }
    };
    const [restA, restB] = await Promise.all([loop(a), loop(b)]);
    expect(movedA + movedB + restA + restB).toBe(950);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(0);
    expect(await ownedRows("rq2", owner)).toEqual({ n: 950, distinct_ids: 950, retry1: 950 });

    await tick(db.pool, "rq2");
    const back = allIds(await drainAll(db.pool, "rq2", "owner"));
    expect(back).toEqual(original.map((e) => e.ev_id));
    expect(allIds(await drainAll(db.pool, "rq2", "other"))).toEqual([]);
  });

  it("movers racing in explicit transactions with pauses: still no duplicates", async () => {
    await db.query("select pgq.create_queue('rq3')");
    await db.query("select pgq.register_consumer('rq3', 'owner')");
    await db.query("select pgq.register_consumer('rq3', 'other')");
    const owner = await subId(db.pool, "rq3", "owner");
    const original = await retryAll("rq3", 700);
    const movers = await Promise.all([0, 1, 2].map((i) => conns.connect(`racer-${i}`)));
    const loop = async (c: pg.Client, pauseMs: number) => {
      let total = 0;
      for (let idle = 0; idle < 3; ) {
        await c.query("begin");
        const n = (await num(c, "select pgq.maint_retry_events()"))!;
        await new Promise((r) => setTimeout(r, pauseMs));
        await c.query("commit");
        total += n;
        idle = n === 0 ? idle + 1 : 0;
      }
      return total;
    };
    const totals = await Promise.all(movers.map((c, i) => loop(c, 5 + i * 7)));
    expect(totals.reduce((x, y) => x + y, 0)).toBe(700);
    expect(totals.filter((t) => t > 0).length).toBeGreaterThan(1); // they did share the work
    expect(await ownedRows("rq3", owner)).toEqual({ n: 700, distinct_ids: 700, retry1: 700 });
    await tick(db.pool, "rq3");
    expect(allIds(await drainAll(db.pool, "rq3", "owner"))).toEqual(original.map((e) => e.ev_id));
  });
});
