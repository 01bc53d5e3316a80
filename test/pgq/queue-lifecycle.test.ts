/**
 * Queue and consumer life cycle, the first batches, the info functions
 * (docs/pgq.md, "The SQL API"), as in Skytools 2's regression test
 * pgq_core.out.
 *
 * The first block replays pgq_core.out in order on a fresh database, so the
 * numbers are the regression's own (queue id 2 for myqueue, batches 1 and 2,
 * ticks 1-3); its tests build on each other. The second block walks the same
 * path through the TypeScript API on a database of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  dropQueue,
  finishBatch,
  getConsumerInfo,
  getQueueInfo,
  installPgq,
  nextBatch,
  registerConsumer,
  tickNow,
  unregisterConsumer,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, num, switchStep2, value, waitForOlderTransactions, withNotices } from "./helpers.ts";

describe("pgq_core.out in order", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase("pgq-lifecycle-sql");
    await installPgq(db.pool);
  });
  afterAll(async () => {
    await db?.drop();
  });

  const tableExists = (name: string) => value<boolean>(db.pool, "select to_regclass($1) is not null", [name]);

  it("create, register, unregister, drop on tmpqueue return 1; a new queue has tick 1 and tables _0.._2", async () => {
    expect(await num(db.pool, "select pgq.create_queue('tmpqueue')")).toBe(1);
    const qid = await num(db.pool, "select queue_id from pgq.queue where queue_name = 'tmpqueue'");
    const { rows: ticks } = await db.pool.query<{ tick_id: string }>(
      "select tick_id from pgq.tick where tick_queue = $1 order by tick_id",
      [qid],
    );
    expect(ticks.map((t) => Number(t.tick_id))).toEqual([1]);
    for (const n of [0, 1, 2]) expect(await tableExists(`pgq.event_${qid}_${n}`)).toBe(true);
    expect(await tableExists(`pgq.event_${qid}_3`)).toBe(false);

    expect(await num(db.pool, "select pgq.register_consumer('tmpqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.unregister_consumer('tmpqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.drop_queue('tmpqueue')")).toBe(1);

    // drop_queue removes the tables, the ticks, the sequences and the queue row
    expect(await tableExists(`pgq.event_${qid}`)).toBe(false);
    expect(await tableExists(`pgq.event_${qid}_0`)).toBe(false);
    expect(await tableExists(`pgq.event_${qid}_id_seq`)).toBe(false);
    expect(await tableExists(`pgq.event_${qid}_tick_seq`)).toBe(false);
    expect(await num(db.pool, "select count(*) from pgq.tick where tick_queue = $1", [qid])).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.queue where queue_id = $1", [qid])).toBe(0);
  });

  it("creating an existing queue returns 0; registering twice returns 0", async () => {
    expect(await num(db.pool, "select pgq.create_queue('myqueue')")).toBe(1);
    expect(await num(db.pool, "select pgq.create_queue('myqueue')")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.queue where queue_name = 'myqueue'")).toBe(1);
    expect(await num(db.pool, "select pgq.register_consumer('myqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.register_consumer('myqueue', 'consumer')")).toBe(0);
    expect(await num(db.pool, "select queue_id from pgq.queue where queue_name = 'myqueue'")).toBe(2);
  });

  it("next_batch is NULL until the ticker runs; then the same batch 1 twice, from tick 1 to tick 2", async () => {
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBeNull();
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBeNull();
    // tick 2 must not see a transaction older than the queue as running, or
    // batch 2 (the empty batch below) would also need the previous slot table
    await waitForOlderTransactions(db.pool, await switchStep2(db.pool, "myqueue"));
    expect(await num(db.pool, "select pgq.ticker()")).toBe(1);
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBe(1);

    const { rows } = await db.pool.query(
      `select queue_name, consumer_name, prev_tick_id::int as prev, tick_id::int as tick,
              batch_start <= batch_end as ordered, lag < interval '30 seconds' as recent
         from pgq.get_batch_info(1)`,
    );
    expect(rows).toEqual([
      { queue_name: "myqueue", consumer_name: "consumer", prev: 1, tick: 2, ordered: true, recent: true },
    ]);
  });

  it("get_consumer_info shows the open batch; get_queue_info the default settings", async () => {
    const { rows: consumers } = await db.pool.query(
      `select queue_name, consumer_name, last_tick::int, current_batch::int, next_tick::int,
              lag < interval '30 seconds' as lag_ok, last_seen < interval '30 seconds' as seen_ok
         from pgq.get_consumer_info()`,
    );
    expect(consumers).toEqual([
      {
        queue_name: "myqueue",
        consumer_name: "consumer",
        last_tick: 1,
        current_batch: 1,
        next_tick: 2,
        lag_ok: true,
        seen_ok: true,
      },
    ]);

    const { rows: queues } = await db.pool.query(
      `select queue_name, queue_ntables, queue_cur_table,
              queue_rotation_period = interval '2 hours' as rotation,
              queue_ticker_max_count,
              queue_ticker_max_lag = interval '3 seconds' as max_lag,
              queue_ticker_idle_period = interval '1 minute' as idle,
              queue_external_ticker,
              ticker_lag < interval '30 seconds' as ticker_lag_ok
         from pgq.get_queue_info()`,
    );
    expect(queues).toEqual([
      {
        queue_name: "myqueue",
        queue_ntables: 3,
        queue_cur_table: 0,
        rotation: true,
        queue_ticker_max_count: 500,
        max_lag: true,
        idle: true,
        queue_external_ticker: false,
        ticker_lag_ok: true,
      },
    ]);
  });

  it("finish_batch(1) returns 1, then 0 with WARNING 'finish_batch: batch 1 not found'", async () => {
    const first = await withNotices(db.pool, (c) => num(c, "select pgq.finish_batch(1)"));
    expect(first.result).toBe(1);
    expect(first.notices).toEqual([]);

    const again = await withNotices(db.pool, (c) => num(c, "select pgq.finish_batch(1)"));
    expect(again.result).toBe(0);
    expect(again.notices).toEqual([{ severity: "WARNING", message: "finish_batch: batch 1 not found" }]);

    const { rows } = await db.pool.query(
      "select last_tick::int, current_batch, next_tick from pgq.get_consumer_info('myqueue', 'consumer')",
    );
    expect(rows).toEqual([{ last_tick: 2, current_batch: null, next_tick: null }]);
  });

  it("an empty batch reads pgq.event_2_0 only, returns no events and still has to be finished", async () => {
    await db.pool.query("select pgq.force_tick('myqueue')");
    expect(await num(db.pool, "select pgq.ticker('myqueue')")).toBe(3);
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBe(2);

    const { rows: tables } = await db.pool.query<{ t: string }>("select t from pgq.batch_event_tables(2) t");
    expect(tables.map((r) => r.t)).toEqual(["pgq.event_2_0"]);
    expect(await batchRows(db.pool, 2)).toEqual([]);

    // not finished: the same batch comes back
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBe(2);
    expect(await num(db.pool, "select pgq.finish_batch(2)")).toBe(1);
    expect(await num(db.pool, "select pgq.next_batch('myqueue', 'consumer')")).toBeNull();
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('myqueue', 'consumer')")).toBe(3);
  });

  it("get_queue_info('nope') is one all-NULL row; get_consumer_info('nope') has no rows", async () => {
    const { rows } = await db.pool.query("select * from pgq.get_queue_info('nope')");
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]!).length).toBeGreaterThanOrEqual(10);
    expect(Object.values(rows[0]!).every((v) => v === null)).toBe(true);

    expect(await num(db.pool, "select count(*) from pgq.get_consumer_info('nope')")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.get_consumer_info('myqueue', 'nope')")).toBe(0);
  });
});

describe("the same life cycle through the TypeScript API", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase("pgq-lifecycle-ts");
    await installPgq(db.pool);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("createQueue / registerConsumer report new vs existing; unregister and drop remove them", async () => {
    expect(await createQueue(db.pool, "tmpqueue")).toBe(true);
    expect(await createQueue(db.pool, "tmpqueue")).toBe(false);
    expect(await registerConsumer(db.pool, "tmpqueue", "consumer")).toBe(true);
    expect(await registerConsumer(db.pool, "tmpqueue", "consumer")).toBe(false);
    expect((await getConsumerInfo(db.pool, "tmpqueue")).map((c) => c.consumerName)).toEqual(["consumer"]);

    await unregisterConsumer(db.pool, "tmpqueue", "consumer");
    expect(await getConsumerInfo(db.pool, "tmpqueue")).toEqual([]);
    await dropQueue(db.pool, "tmpqueue");
    expect(await getQueueInfo(db.pool, "tmpqueue")).toEqual([]);
    expect(await num(db.pool, "select count(*) from pgq.queue")).toBe(0);
  });

  it("nextBatch is null before a tick, then a sticky batch from the registration tick to the new one", async () => {
    await createQueue(db.pool, "myqueue");
    await registerConsumer(db.pool, "myqueue", "consumer");
    expect(await nextBatch(db.pool, "myqueue", "consumer")).toBeNull();

    const tickId = await tickNow(db.pool, "myqueue");
    const batch = await nextBatch(db.pool, "myqueue", "consumer");
    expect(batch).toMatchObject({ prevTickId: 1, tickId });
    expect(batch!.tickTime.getTime()).toBeGreaterThanOrEqual(batch!.prevTickTime.getTime());
    expect(await nextBatch(db.pool, "myqueue", "consumer")).toEqual(batch);

    const [info] = await getConsumerInfo(db.pool, "myqueue", "consumer");
    expect(info).toMatchObject({
      queueName: "myqueue",
      consumerName: "consumer",
      lastTick: 1,
      currentBatch: batch!.batchId,
      nextTick: tickId,
    });
    expect(info!.lagSeconds).toBeLessThan(30);
    expect(info!.lastSeenSeconds).toBeLessThan(30);

    expect(await finishBatch(db.pool, batch!.batchId)).toBe(true);
    const again = await withNotices(db.pool, (c) => finishBatch(c, batch!.batchId));
    expect(again.result).toBe(false);
    expect(again.notices.map((n) => n.message)).toEqual([`finish_batch: batch ${batch!.batchId} not found`]);
    expect(await nextBatch(db.pool, "myqueue", "consumer")).toBeNull();
    expect((await getConsumerInfo(db.pool, "myqueue", "consumer"))[0]).toMatchObject({
      lastTick: tickId,
      currentBatch: null,
      nextTick: null,
    });
  });

  it("getQueueInfo returns the default settings; unknown names give empty lists", async () => {
    const [q] = await getQueueInfo(db.pool, "myqueue");
    expect(q).toMatchObject({
      queueName: "myqueue",
      ntables: 3,
      curTable: 0,
      rotationPeriodSeconds: 7200,
      externalTicker: false,
      tickerPaused: false,
      tickerMaxCount: 500,
      tickerMaxLagSeconds: 3,
      tickerIdlePeriodSeconds: 60,
    });
    expect(q!.tickerLagSeconds).toBeLessThan(30);
    expect(q!.lastTickId).toBe(await num(db.pool, "select max(tick_id) from pgq.tick"));

    expect(await getQueueInfo(db.pool, "nope")).toEqual([]);
    expect(await getConsumerInfo(db.pool, "nope")).toEqual([]);
    expect(await getConsumerInfo(db.pool, "myqueue", "nope")).toEqual([]);
  });
});
