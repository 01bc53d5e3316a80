/**
 * Batches (docs/pgq.md, "How it works"): events inserted between two
 * ticks make up exactly one batch, in ev_id order, with their extras,
 * first-delivery retry NULL and the producer's txid. Then the same path through the TypeScript
 * API: insertEvent -> nextBatch -> batchEvents / getBatchEvents -> finishBatch.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  batchEvents,
  createQueue,
  finishBatch,
  getBatchEvents,
  insertEvent,
  installPgq,
  nextBatch,
  registerConsumer,
  tickNow,
  type PgqEvent,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, drainBatch, num, tick, value } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-batches");
  await installPgq(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

/** Runs `sql` in its own transaction and returns its result with that transaction's txid. */
async function inTx(sql: string, params: unknown[]): Promise<{ id: number; txid: number }> {
  const client = await db.pool.connect();
  try {
    await client.query("begin");
    const id = await num(client, sql, params);
    const txid = await num(client, "select pg_current_xact_id()::text::int8");
    await client.query("commit");
    return { id: id!, txid: txid! };
  } finally {
    client.release();
  }
}

describe("a batch holds exactly the events between its ticks", () => {
  it("r1, r2 (4 extras), r3 get ids 1-3 in pgq.event_<q>_0 and come back in one batch, in order, retry NULL", async () => {
    expect(await num(db.pool, "select pgq.create_queue('myqueue')")).toBe(1);
    expect(await num(db.pool, "select pgq.register_consumer('myqueue', 'consumer')")).toBe(1);
    const qid = await num(db.pool, "select queue_id from pgq.queue where queue_name = 'myqueue'");

    const r1 = await inTx("select pgq.insert_event('myqueue', 'r1', 'data')", []);
    const r2 = await inTx("select pgq.insert_event('myqueue', 'r2', 'data', 'extra1', 'extra2', 'extra3', 'extra4')", []);
    const r3 = await inTx("select pgq.insert_event('myqueue', 'r3', 'data')", []);
    expect([r1.id, r2.id, r3.id]).toEqual([1, 2, 3]);
    expect(await value(db.pool, "select pgq.current_event_table('myqueue')")).toBe(`pgq.event_${qid}_0`);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_0`)).toBe(3);

    expect(await tick(db.pool, "myqueue")).toBe(2);
    const batchId = (await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')"))!;
    expect(batchId).not.toBeNull();

    const expected = [
      { ev_id: 1, ev_txid: r1.txid, ev_retry: null, ev_type: "r1", ev_data: "data", ev_extra1: null, ev_extra2: null, ev_extra3: null, ev_extra4: null },
      { ev_id: 2, ev_txid: r2.txid, ev_retry: null, ev_type: "r2", ev_data: "data", ev_extra1: "extra1", ev_extra2: "extra2", ev_extra3: "extra3", ev_extra4: "extra4" },
      { ev_id: 3, ev_txid: r3.txid, ev_retry: null, ev_type: "r3", ev_data: "data", ev_extra1: null, ev_extra2: null, ev_extra3: null, ev_extra4: null },
    ];
    expect(await batchRows(db.pool, batchId)).toEqual(expected);
    // repeatable while the batch is open
    expect(await batchRows(db.pool, batchId)).toEqual(expected);
    // ev_time is the insert time
    expect(
      await value(db.pool, "select bool_and(ev_time <= now() and ev_time > now() - interval '1 minute') from pgq.get_batch_events($1)", [batchId]),
    ).toBe(true);

    expect(await num(db.pool, "select pgq.finish_batch($1)", [batchId])).toBe(1);
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBeNull();
  });

  it("an event inserted after the tick is not in that batch but in the next one", async () => {
    await db.pool.query("select pgq.create_queue('splitqueue')");
    await db.pool.query("select pgq.register_consumer('splitqueue', 'consumer')");
    await db.pool.query("select pgq.insert_event('splitqueue', 'early', 'a')");
    await tick(db.pool, "splitqueue");
    await db.pool.query("select pgq.insert_event('splitqueue', 'late', 'b')");
    expect((await drainBatch(db.pool, "splitqueue", "consumer"))!.map((e) => e.ev_type)).toEqual(["early"]);
    await tick(db.pool, "splitqueue");
    expect((await drainBatch(db.pool, "splitqueue", "consumer"))!.map((e) => e.ev_type)).toEqual(["late"]);
  });

  it("events come in ev_id (allocation) order, not commit order; rolled-back ones never", async () => {
    await db.pool.query("select pgq.create_queue('orderqueue')");
    await db.pool.query("select pgq.register_consumer('orderqueue', 'consumer')");
    const first = await db.pool.connect();
    const second = await db.pool.connect();
    try {
      await first.query("begin");
      const a = await num(first, "select pgq.insert_event('orderqueue', 'a', 'first allocated')");
      await second.query("begin");
      const b = await num(second, "select pgq.insert_event('orderqueue', 'b', 'second allocated')");
      await second.query("commit");
      await first.query("commit");
      await second.query("begin");
      await second.query("select pgq.insert_event('orderqueue', 'gone', 'rolled back')");
      await second.query("rollback");
      expect(a!).toBeLessThan(b!);

      await tick(db.pool, "orderqueue");
      const rows = (await drainBatch(db.pool, "orderqueue", "consumer"))!;
      expect(rows.map((e) => [e.ev_id, e.ev_type])).toEqual([
        [a, "a"],
        [b, "b"],
      ]);
    } finally {
      first.release();
      second.release();
    }
  });
});

describe("the same path through the TypeScript API", () => {
  it("insertEvent -> nextBatch -> batchEvents (cursor) -> finishBatch", async () => {
    await createQueue(db.pool, "tsqueue");
    expect(await registerConsumer(db.pool, "tsqueue", "ts_consumer")).toBe(true);

    const ids: number[] = [];
    for (let i = 1; i <= 5; i++) {
      ids.push(await insertEvent(db.pool, "tsqueue", { type: `t${i}`, data: `payload ${i}` }));
    }
    ids.push(
      await insertEvent(db.pool, "tsqueue", { type: "full", data: null, extra1: "e1", extra2: "e2", extra3: "e3", extra4: "e4" }),
    );
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(6);

    const tickId = await tickNow(db.pool, "tsqueue");
    const batch = (await nextBatch(db.pool, "tsqueue", "ts_consumer"))!;
    expect(batch).toMatchObject({ prevTickId: 1, tickId });

    // stream in chunks smaller than the batch, on a dedicated client
    const client = await db.pool.connect();
    const streamed: PgqEvent[] = [];
    try {
      for await (const ev of batchEvents(client, batch.batchId, 2)) streamed.push(ev);
    } finally {
      client.release();
    }
    expect(streamed.map((e) => e.id)).toEqual(ids);
    expect(streamed.map((e) => e.type)).toEqual(["t1", "t2", "t3", "t4", "t5", "full"]);
    expect(streamed[0]).toMatchObject({ data: "payload 1", retry: null, extra1: null, extra4: null });
    expect(streamed[5]).toMatchObject({ data: null, extra1: "e1", extra2: "e2", extra3: "e3", extra4: "e4" });
    for (const ev of streamed) {
      expect(ev.time).toBeInstanceOf(Date);
      expect(Number.isSafeInteger(ev.txid) && ev.txid > 0).toBe(true);
    }

    // getBatchEvents (pgq.get_batch_events) returns the same events
    expect(await getBatchEvents(db.pool, batch.batchId)).toEqual(streamed);

    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
    expect(await nextBatch(db.pool, "tsqueue", "ts_consumer")).toBeNull();
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('tsqueue', 'ts_consumer')")).toBe(tickId);
  });

  it("an empty batch streams nothing and still finishes", async () => {
    const tickId = await tickNow(db.pool, "tsqueue");
    const batch = (await nextBatch(db.pool, "tsqueue", "ts_consumer"))!;
    expect(batch.tickId).toBe(tickId);
    const client = await db.pool.connect();
    const streamed: PgqEvent[] = [];
    try {
      for await (const ev of batchEvents(client, batch.batchId)) streamed.push(ev);
    } finally {
      client.release();
    }
    expect(streamed).toEqual([]);
    expect(await getBatchEvents(db.pool, batch.batchId)).toEqual([]);
    expect(await nextBatch(db.pool, "tsqueue", "ts_consumer")).toEqual(batch);
    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
  });

  it("an event inserted inside a rolled-back transaction is never delivered", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      await insertEvent(client, "tsqueue", { type: "ghost", data: "x" });
      await client.query("rollback");
    } finally {
      client.release();
    }
    const kept = await insertEvent(db.pool, "tsqueue", { type: "kept", data: "y" });
    await tickNow(db.pool, "tsqueue");
    const batch = (await nextBatch(db.pool, "tsqueue", "ts_consumer"))!;
    const events = await getBatchEvents(db.pool, batch.batchId);
    expect(events.map((e) => [e.id, e.type])).toEqual([[kept, "kept"]]);
    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
  });
});
