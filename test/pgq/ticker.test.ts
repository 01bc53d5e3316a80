/**
 * pgq.ticker, pgq.tick_if_due, force_tick, and queues with an external tick
 * source. pgq.ticker(q) and pgq.ticker() tick whenever called, as in
 * Skytools 2; the PgQ 3 decision of when a tick is due is
 * pgq.tick_if_due(q)'s (docs/differences-from-skytools.md, "When a tick is
 * due: `pgq.tick_if_due(queue)`"), which returns NULL when no tick is due;
 * force_tick makes its next call tick.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  forceTick,
  getQueueInfo,
  installPgq,
  registerConsumer,
  setQueueConfig,
  tickAll,
  tickIfDue,
  tickNow,
  tickQueue,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, drainBatch, nextBatchId, num } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-ticker");
  await installPgq(db.pool);
  await db.pool.query("select pgq.create_queue('myqueue')");
});
afterAll(async () => {
  await db?.drop();
});

const eventSeq = (queue: string) =>
  num(db.pool, "select pgq.seq_getval(queue_event_seq) from pgq.queue where queue_name = $1", [queue]);
const lastTick = (queue: string) =>
  num(
    db.pool,
    "select max(tick_id) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = $1",
    [queue],
  );

describe("tick_if_due and force_tick", () => {
  it("a fresh queue ticks on the first tick_if_due call; right after a tick, an idle queue does not", async () => {
    expect(await num(db.pool, "select pgq.tick_if_due('myqueue')")).toBe(2);
    expect(await num(db.pool, "select pgq.tick_if_due('myqueue')")).toBeNull();
    expect(await lastTick("myqueue")).toBe(2);
  });

  it("a fresh queue that already has events also ticks on the first tick_if_due call", async () => {
    await db.pool.query("select pgq.create_queue('busyfresh')");
    await db.pool.query("select pgq.register_consumer('busyfresh', 'consumer')");
    const id = (await num(db.pool, "select pgq.insert_event('busyfresh', 'x', 'y')"))!;
    expect(await num(db.pool, "select pgq.tick_if_due('busyfresh')")).toBe(2);
    expect((await drainBatch(db.pool, "busyfresh", "consumer"))!.map((e) => e.ev_id)).toEqual([id]);
  });

  it("moves the event sequence past nextval by 2 x max_count, returns the current last tick, and the ticker then ticks", async () => {
    for (let i = 0; i < 3; i++) await db.pool.query("select pgq.insert_event('myqueue', 'x', 'y')");
    const seqBefore = (await eventSeq("myqueue"))!;
    expect(seqBefore).toBe(3);

    expect(await num(db.pool, "select pgq.force_tick('myqueue')")).toBe(2);
    // nextval gives seqBefore + 1, then + 2 x 500
    expect(await eventSeq("myqueue")).toBe(seqBefore + 1 + 2 * 500);
    expect(await lastTick("myqueue")).toBe(2); // force_tick itself does not tick
    expect(await num(db.pool, "select pgq.tick_if_due('myqueue')")).toBe(3);
    expect(await num(db.pool, "select pgq.force_tick('myqueue')")).toBe(3);
  });

  it("uses the queue's own max_count", async () => {
    await db.pool.query("select pgq.set_queue_config('myqueue', 'ticker_max_count', '10')");
    const seqBefore = (await eventSeq("myqueue"))!;
    const last = await lastTick("myqueue");
    expect(await num(db.pool, "select pgq.force_tick('myqueue')")).toBe(last);
    expect(await eventSeq("myqueue")).toBe(seqBefore + 1 + 2 * 10);
    expect(await num(db.pool, "select pgq.tick_if_due('myqueue')")).toBe(last! + 1);
  });

  it("forceTick / tickIfDue / tickQueue / tickNow in TypeScript", async () => {
    const last = (await lastTick("myqueue"))!;
    expect(await tickIfDue(db.pool, "myqueue")).toBeNull();
    expect(await forceTick(db.pool, "myqueue")).toBe(last);
    expect(await tickIfDue(db.pool, "myqueue")).toBe(last + 1);
    expect(await tickQueue(db.pool, "myqueue")).toBe(last + 2);
    expect(await tickNow(db.pool, "myqueue")).toBe(last + 3);
    expect((await getQueueInfo(db.pool, "myqueue"))[0]!.lastTickId).toBe(last + 3);
  });

  it("on an external-ticker queue force_tick fails with 'queue not found or ticks not allowed'", async () => {
    await db.pool.query("select pgq.create_queue('forcedext')");
    await db.pool.query("select pgq.set_queue_config('forcedext', 'external_ticker', 'true')");
    const seqBefore = await eventSeq("forcedext");
    await expect(db.pool.query("select pgq.force_tick('forcedext')")).rejects.toThrow(
      /^queue not found or ticks not allowed$/,
    );
    await expect(db.pool.query("select pgq.force_tick('nope')")).rejects.toThrow(
      /^queue not found or ticks not allowed$/,
    );
    expect(await eventSeq("forcedext")).toBe(seqBefore);
  });
});

describe("external ticker", () => {
  beforeAll(async () => {
    expect(await num(db.pool, "select pgq.create_queue('extqueue')")).toBe(1);
    expect(await num(db.pool, "select pgq.set_queue_config('extqueue', 'external_ticker', 'true')")).toBe(1);
    expect(await num(db.pool, "select pgq.register_consumer('extqueue', 'consumer')")).toBe(1);
  });

  it("ticker(q) on an external-ticker queue fails with 'This queue has external tick source.'", async () => {
    await expect(db.pool.query("select pgq.ticker('extqueue')")).rejects.toThrow(
      /^This queue has external tick source\.$/,
    );
    await expect(db.pool.query("select pgq.tick_if_due('extqueue')")).rejects.toThrow(
      /^This queue has external tick source\.$/,
    );
    expect(await lastTick("extqueue")).toBe(1);
  });

  it("ticker(q, 100) inserts tick 100 and the consumer gets a batch from tick 1 to tick 100", async () => {
    const id = (await num(db.pool, "select pgq.insert_event('extqueue', 'ext', 'data')"))!;
    expect(await num(db.pool, "select pgq.ticker('extqueue', 100)")).toBe(100);
    const { rows } = await db.pool.query<{ tick_id: string }>(
      `select tick_id from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
        where q.queue_name = 'extqueue' order by tick_id`,
    );
    expect(rows.map((r) => Number(r.tick_id))).toEqual([1, 100]);

    const batchId = (await nextBatchId(db.pool, "extqueue", "consumer"))!;
    const { rows: info } = await db.pool.query(
      "select prev_tick_id::int as prev, tick_id::int as tick from pgq.get_batch_info($1)",
      [batchId],
    );
    expect(info).toEqual([{ prev: 1, tick: 100 }]);
    expect((await batchRows(db.pool, batchId)).map((e) => [e.ev_id, e.ev_type])).toEqual([[id, "ext"]]);
    expect(await num(db.pool, "select pgq.finish_batch($1)", [batchId])).toBe(1);
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('extqueue', 'consumer')")).toBe(100);
  });

  it("tick ids may jump: the next external tick 250 follows 100", async () => {
    expect(await num(db.pool, "select pgq.ticker('extqueue', 250)")).toBe(250);
    expect(await drainBatch(db.pool, "extqueue", "consumer")).toEqual([]);
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('extqueue', 'consumer')")).toBe(250);
  });

  it("ticker(q, id) on a normal or unknown queue fails with 'queue not found'", async () => {
    const last = await lastTick("myqueue");
    await expect(db.pool.query("select pgq.ticker('myqueue', 5000)")).rejects.toThrow(/^queue not found$/);
    await expect(db.pool.query("select pgq.ticker('nope', 5000)")).rejects.toThrow(/^queue not found$/);
    expect(await lastTick("myqueue")).toBe(last);
  });

  it("tick_if_due() and ticker() tick only the queues without an external tick source", async () => {
    // keep the queues made so far from becoming due while the test runs
    const { rows: others } = await db.pool.query<{ queue_name: string }>("select queue_name from pgq.queue");
    for (const { queue_name } of others) {
      await setQueueConfig(db.pool, queue_name, "ticker_max_lag", "1 hour");
      await setQueueConfig(db.pool, queue_name, "ticker_idle_period", "1 hour");
    }
    // the two fresh queues are due (a queue with one tick always ticks)
    await createQueue(db.pool, "fresh1");
    await createQueue(db.pool, "fresh2");
    await registerConsumer(db.pool, "fresh2", "c");
    const extBefore = await lastTick("extqueue");
    expect(await num(db.pool, "select pgq.tick_if_due()")).toBe(2);
    expect(await lastTick("fresh1")).toBe(2);
    expect(await lastTick("fresh2")).toBe(2);
    expect(await num(db.pool, "select pgq.tick_if_due()")).toBe(0);
    // ticker() ticks every one of them now, due or not
    const internal = (await num(db.pool, "select count(*) from pgq.queue where not queue_external_ticker"))!;
    expect(internal).toBe(others.length + 2 - 2); // forcedext and extqueue are ticked externally
    expect(await tickAll(db.pool)).toBe(internal);
    expect(await lastTick("fresh1")).toBe(3);
    expect(await lastTick("extqueue")).toBe(extBefore);
  });

  it("setQueueConfig('external_ticker') from TypeScript switches a queue to external ticks", async () => {
    await createQueue(db.pool, "tsext");
    await setQueueConfig(db.pool, "tsext", "external_ticker", "true");
    expect((await getQueueInfo(db.pool, "tsext"))[0]!.externalTicker).toBe(true);
    await expect(tickQueue(db.pool, "tsext")).rejects.toMatchObject({ kind: "queue_external_ticker" });
    expect(await num(db.pool, "select pgq.ticker('tsext', 7)")).toBe(7);
  });
});

describe("pgq.ticker ticks whenever called (Skytools 2)", () => {
  it("ticker(q) inserts a tick on every call, even right after one, and returns its id", async () => {
    await db.pool.query("select pgq.create_queue('s2queue')");
    expect(await num(db.pool, "select pgq.ticker('s2queue')")).toBe(2);
    expect(await num(db.pool, "select pgq.ticker('s2queue')")).toBe(3);
    expect(await num(db.pool, "select pgq.ticker('s2queue')")).toBe(4);
    expect(await lastTick("s2queue")).toBe(4);
  });

  it("events inserted, then ticker(): the next batch has them, however recent the last tick", async () => {
    await db.pool.query("select pgq.register_consumer('s2queue', 'c')");
    const before = (await num(db.pool, "select count(*) from pgq.queue where not queue_external_ticker and not queue_ticker_paused"))!;
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await num(db.pool, "select pgq.insert_event('s2queue', 'x', $1)", [String(i)]))!);
    expect(await num(db.pool, "select pgq.ticker()")).toBe(before);
    expect((await drainBatch(db.pool, "s2queue", "c"))!.map((e) => e.ev_id)).toEqual(ids);
  });

  it("the errors are Skytools 2's: 'no such queue'", async () => {
    await expect(db.pool.query("select pgq.ticker('nope')")).rejects.toThrow(/^no such queue$/);
    await expect(db.pool.query("select pgq.tick_if_due('nope')")).rejects.toThrow(/^no such queue$/);
  });
});
