/**
 * Long and rolled-back transactions (docs/pgq.md, "How it works"), with
 * real concurrent connections:
 *   (a) a long transaction's events are delivered in exactly the batch in
 *       which it commits, never earlier, never split and never twice; also
 *       when more than 100 txids were used between its start and the tick,
 *       so pgq.batch_event_sql fetches it through the explicit txid list,
 *       and when it spans a table rotation.
 *   (b) events of rolled-back transactions (whole, spanning ticks, or a
 *       rolled-back savepoint) are never delivered.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import {
  allIds,
  Connections,
  currentTxid,
  drainAll,
  drainOne,
  ids,
  num,
  openBatch,
  batchRows,
  queueId,
  switchStep2,
  tick,
  value,
  waitForOlderTransactions,
} from "./helpers.ts";

let db: TestDatabase;
let conns: Connections;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-longtx");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await db?.drop();
});

const insert = async (c: pg.ClientBase | pg.Pool, queue: string, type: string, data = "x") =>
  (await num(c, "select pgq.insert_event($1, $2, $3)", [queue, type, data]))!;

/** Snapshot of a tick as [xmin, xmax, xip]. */
async function tickSnapshot(queue: string, tickId: number): Promise<{ xmin: number; xmax: number; xip: number[] }> {
  const { rows } = await db.query<{ xmin: string; xmax: string; xip: string[] | null }>(
    `select pg_snapshot_xmin(tick_snapshot)::text as xmin, pg_snapshot_xmax(tick_snapshot)::text as xmax,
            array(select x::text from pg_snapshot_xip(tick_snapshot) x) as xip
       from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
      where q.queue_name = $1 and t.tick_id = $2`,
    [queue, tickId],
  );
  const r = rows[0]!;
  return { xmin: Number(r.xmin), xmax: Number(r.xmax), xip: (r.xip ?? []).map(Number) };
}

describe("a long transaction lands in the batch where it commits", () => {
  it("T1 inserts e1 and stays open over ticks A and B, commits, tick C: e1 only in (B,C], together with later T1 events", async () => {
    await db.query("select pgq.create_queue('lt')");
    await db.query("select pgq.register_consumer('lt', 'c')");
    const t1 = await conns.connect("T1");

    await t1.query("begin");
    const e1 = await insert(t1, "lt", "e1", "long");
    const t1txid = await currentTxid(t1);
    const e0 = await insert(db.pool, "lt", "e0");
    const tickA = await tick(db.pool, "lt");
    const eA = await insert(db.pool, "lt", "eA");
    const tickB = await tick(db.pool, "lt");
    const e1b = await insert(t1, "lt", "e1b", "long, after B");
    await t1.query("commit");
    const eB = await insert(db.pool, "lt", "eB");
    const tickC = await tick(db.pool, "lt");

    // T1 was running at A and at B, finished by C
    for (const t of [tickA, tickB]) expect((await tickSnapshot("lt", t)).xip).toContain(t1txid);
    expect((await tickSnapshot("lt", tickC)).xip).not.toContain(t1txid);
    expect((await tickSnapshot("lt", tickC)).xmax).toBeGreaterThan(t1txid);

    const batches = await drainAll(db.pool, "lt", "c");
    expect(batches.map((b) => [b.prevTick, b.curTick])).toEqual([
      [1, tickA],
      [tickA, tickB],
      [tickB, tickC],
    ]);
    expect(batches.map((b) => ids(b.events))).toEqual([[e0], [eA], [e1, e1b, eB]]);
    const delivered = batches[2]!.events.filter((e) => e.ev_type!.startsWith("e1"));
    expect(delivered.map((e) => e.ev_txid)).toEqual([t1txid, t1txid]);
  });

  it("with >100 txids used between T1's start and tick A, batch (B,C] fetches T1 through the explicit txid list (= any(...))", async () => {
    await db.query("select pgq.create_queue('lt100')");
    await db.query("select pgq.register_consumer('lt100', 'c')");
    const t1 = await conns.connect("T1-100");

    await t1.query("begin");
    const e1 = await insert(t1, "lt100", "e1", "long");
    const t1txid = await currentTxid(t1);
    // 300 separate committed transactions, each with its own txid and event
    const burst: number[] = [];
    for (let i = 0; i < 300; i++) burst.push(await insert(db.pool, "lt100", "burst", String(i)));
    const tickA = await tick(db.pool, "lt100");
    const tickB = await tick(db.pool, "lt100");
    await t1.query("commit");
    const tickC = await tick(db.pool, "lt100");

    const snapB = await tickSnapshot("lt100", tickB);
    expect(snapB.xip).toContain(t1txid);
    expect(snapB.xmax - t1txid).toBeGreaterThan(100);

    const first = await drainOne(db.pool, "lt100", "c");
    expect([first!.prevTick, first!.curTick]).toEqual([1, tickA]);
    expect(ids(first!.events)).toEqual(burst);
    expect(burst).toHaveLength(300);
    const second = await drainOne(db.pool, "lt100", "c");
    expect([second!.prevTick, second!.curTick, second!.events.length]).toEqual([tickA, tickB, 0]);

    const third = (await openBatch(db.pool, "lt100", "c"))!;
    expect([third.prevTick, third.curTick]).toEqual([tickB, tickC]);
    const sql = await value<string>(db.pool, "select pgq.batch_event_sql($1)", [third.batchId]);
    expect(sql).toContain("= any(");
    // T1's txid is in that list, and the range part starts above it
    const list = /ev_txid = any\('\{([0-9,]+)\}'/.exec(sql)![1]!.split(",").map(Number);
    expect(list).toContain(t1txid);
    const lo = Number(/ev_txid >= '(\d+)'/.exec(sql)![1]);
    expect(lo).toBeGreaterThan(t1txid);

    const events = await batchRows(db.pool, third.batchId);
    expect(events.map((e) => [e.ev_id, e.ev_txid, e.ev_type])).toEqual([[e1, t1txid, "e1"]]);
    expect(await num(db.pool, "select pgq.finish_batch($1)", [third.batchId])).toBe(1);
    expect(await drainOne(db.pool, "lt100", "c")).toBeNull();
  });

  it("several overlapping long transactions committing in a different order than they started: each event exactly once, in its commit batch", async () => {
    await db.query("select pgq.create_queue('ltmany')");
    await db.query("select pgq.register_consumer('ltmany', 'c')");
    const clients = await Promise.all([0, 1, 2, 3].map((i) => conns.connect(`long-${i}`)));
    const made = new Map<number, number[]>(); // client index -> event ids
    for (const [i, c] of clients.entries()) {
      await c.query("begin");
      made.set(i, [await insert(c, "ltmany", `t${i}`)]);
    }
    // commit order 2, 0, 3, 1 with a tick after each commit; the still-open ones keep inserting
    const commitBatch = new Map<number, number>(); // client -> tick at which it is visible
    for (const i of [2, 0, 3, 1]) {
      for (const [j, c] of clients.entries()) if (!commitBatch.has(j)) made.get(j)!.push(await insert(c, "ltmany", `t${j}`));
      await tick(db.pool, "ltmany");
      await clients[i]!.query("commit");
      commitBatch.set(i, await tick(db.pool, "ltmany"));
    }
    const batches = await drainAll(db.pool, "ltmany", "c");
    for (const [i, tickId] of commitBatch) {
      const batch = batches.find((b) => b.curTick === tickId)!;
      expect(ids(batch.events)).toEqual(made.get(i)!.slice().sort((a, b) => a - b));
    }
    const every = allIds(batches);
    expect(every.length).toBe(new Set(every).size);
    expect(new Set(every)).toEqual(new Set([...made.values()].flat()));
  });

  it("a long transaction that spans a table rotation: events in the old and the new table both come in its commit batch", async () => {
    await db.query("select pgq.create_queue('ltrot')");
    await db.query("select pgq.register_consumer('ltrot', 'c')");
    const qid = await queueId(db.pool, "ltrot");
    await waitForOlderTransactions(db.pool, (await switchStep2(db.pool, "ltrot"))!);
    await tick(db.pool, "ltrot");
    await drainAll(db.pool, "ltrot", "c"); // off the first tick, onto one above step2

    const t1 = await conns.connect("T1-rot");
    await t1.query("begin");
    const old = await insert(t1, "ltrot", "old-table");
    const t1txid = await currentTxid(t1);
    await tick(db.pool, "ltrot");
    await db.query("select pgq.set_queue_config('ltrot', 'rotation_period', '0')");
    expect(await num(db.pool, "select pgq.maint_rotate_tables_step1('ltrot')")).toBe(1);
    expect(await num(db.pool, "select pgq.maint_rotate_tables_step2()")).toBeGreaterThanOrEqual(1);
    const fresh = await insert(t1, "ltrot", "new-table");
    // while T1 runs, a consumer that moves on still sits on ticks with xmin <= T1 < step2: no second rotation
    await tick(db.pool, "ltrot");
    await drainAll(db.pool, "ltrot", "c");
    expect(await num(db.pool, "select pgq.maint_rotate_tables_step1('ltrot')")).toBe(0);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_0 where ev_id = $1`, [old])).toBe(0); // not committed
    await t1.query("commit");
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_0 where ev_id = $1`, [old])).toBe(1);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_1 where ev_id = $1`, [fresh])).toBe(1);

    await tick(db.pool, "ltrot");
    const batches = await drainAll(db.pool, "ltrot", "c");
    const withT1 = batches.filter((b) => b.events.length > 0);
    expect(withT1).toHaveLength(1);
    expect(withT1[0]!.events.map((e) => [e.ev_id, e.ev_txid])).toEqual([
      [old, t1txid],
      [fresh, t1txid],
    ]);
  });
});

describe("isolation levels: a producer whose snapshot predates a rotation", () => {
  for (const level of ["repeatable read", "serializable"]) {
    it(`${level}: its insert after a rotation fails with a serialization error, and the retried event is delivered once`, async () => {
      const q = `iso_${level.replace(" ", "_")}`;
      await db.query("select pgq.create_queue($1)", [q]);
      await db.query("select pgq.register_consumer($1, 'c')", [q]);
      await db.query("select pgq.set_queue_config($1, 'rotation_period', '0')", [q]);
      await waitForOlderTransactions(db.pool, (await switchStep2(db.pool, q))!);
      await tick(db.pool, q);
      await drainAll(db.pool, q, "c");

      const producer = await conns.connect(`producer-${level}`);
      await producer.query(`begin isolation level ${level}`);
      await producer.query("select count(*) from pgq.queue"); // the transaction's snapshot is taken here, no txid yet

      expect(await num(db.pool, "select pgq.maint_rotate_tables_step1($1)", [q])).toBe(1);
      expect(await num(db.pool, "select pgq.maint_rotate_tables_step2()")).toBeGreaterThanOrEqual(1);
      const step2 = (await switchStep2(db.pool, q))!;

      // Its snapshot shows the slot from before the rotation: writing there
      // would lose the event, so the insert is refused as a serialization failure.
      await expect(insert(producer, q, "late-txid")).rejects.toMatchObject({ code: "40001" });
      await producer.query("rollback");

      // The producer retries, as any REPEATABLE READ/SERIALIZABLE client must.
      await producer.query(`begin isolation level ${level}`);
      const ev = await insert(producer, q, "late-txid");
      const txid = await currentTxid(producer);
      expect(txid).toBeGreaterThan(Number(step2));
      await waitForOlderTransactions(db.pool, step2);
      await tick(db.pool, q);
      const before = await drainAll(db.pool, q, "c");
      await producer.query("commit");
      await tick(db.pool, q);
      const after = await drainAll(db.pool, q, "c");
      expect(allIds([...before, ...after])).toEqual([ev]);
    });
  }
});

describe("rolled-back events are never delivered", () => {
  it("a rolled-back producer, one that spans ticks, a failed transaction and a rolled-back savepoint deliver nothing", async () => {
    await db.query("select pgq.create_queue('rb')");
    await db.query("select pgq.register_consumer('rb', 'c')");
    const committed: number[] = [];
    const [p1, p2, p3, p4] = await Promise.all(["rb-1", "rb-2", "rb-3", "rb-4"].map((n) => conns.connect(n)));

    // p1: plain rollback, interleaved with committed events
    await p1!.query("begin");
    await insert(p1!, "rb", "rollback", "1");
    committed.push(await insert(db.pool, "rb", "ok"));
    await insert(p1!, "rb", "rollback", "2");
    await p1!.query("rollback");

    // p2: spans two ticks, then rolls back
    await p2!.query("begin");
    await insert(p2!, "rb", "rollback", "3");
    await tick(db.pool, "rb");
    await insert(p2!, "rb", "rollback", "4");
    committed.push(await insert(db.pool, "rb", "ok"));
    await tick(db.pool, "rb");

    // p3: an error aborts the transaction after its inserts
    await p3!.query("begin");
    await insert(p3!, "rb", "rollback", "5");
    await expect(p3!.query("select 1 / 0")).rejects.toThrow(/division by zero/);
    await p3!.query("rollback");

    // p4: a rolled-back savepoint inside a committed transaction
    await p4!.query("begin");
    const keep1 = await insert(p4!, "rb", "keep");
    await p4!.query("savepoint sp");
    await insert(p4!, "rb", "rollback", "6");
    await p4!.query("rollback to savepoint sp");
    const keep2 = await insert(p4!, "rb", "keep");
    await p4!.query("commit");
    committed.push(keep1, keep2);

    await p2!.query("rollback");
    committed.push(await insert(db.pool, "rb", "ok"));
    await tick(db.pool, "rb");
    await tick(db.pool, "rb");

    const batches = await drainAll(db.pool, "rb", "c");
    const got = batches.flatMap((b) => b.events);
    expect(got.filter((e) => e.ev_type === "rollback")).toEqual([]);
    expect(got.map((e) => e.ev_id).sort((a, b) => a - b)).toEqual(committed.sort((a, b) => a - b));
  });
});
