/**
 * Table rotation with rotation_period 0 (docs/pgq-rotation-and-txids.md).
 * Step 1 switches to the next slot table, step 2 confirms the switch, new
 * events go to the new table, and a batch that spans the switch reads both
 * tables and gets the events from each.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  getQueueInfo,
  insertEvent,
  installPgq,
  registerConsumer,
  rotateStep1,
  rotateStep2,
  setQueueConfig,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, drainBatch, nextBatchId, num, switchStep2, tick, value, waitForOlderTransactions } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-rotation-basic");
  await installPgq(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

describe("rotation with period 0", () => {
  let qid: number;
  let before: number;
  let after: number;

  beforeAll(async () => {
    await db.pool.query("select pgq.create_queue('myqueue')");
    await db.pool.query("select pgq.register_consumer('myqueue', 'consumer')");
    qid = (await num(db.pool, "select queue_id from pgq.queue where queue_name = 'myqueue'"))!;
    // Move the consumer off the first tick (a consumer there holds rotation
    // back, see the rotation guard tests), with no transaction older than the
    // queue running.
    await waitForOlderTransactions(db.pool, await switchStep2(db.pool, "myqueue"));
    await db.pool.query("select pgq.insert_event('myqueue', 'first', 'x')");
    await tick(db.pool, "myqueue");
    expect((await drainBatch(db.pool, "myqueue", "consumer"))!.map((e) => e.ev_type)).toEqual(["first"]);
  });

  it("step1 returns 1 and switches to table 1; step1 again returns 0 until step2 confirms", async () => {
    expect(await num(db.pool, "select pgq.set_queue_config('myqueue', 'rotation_period', '0')")).toBe(1);
    before = (await num(db.pool, "select pgq.insert_event('myqueue', 'before', 'in table 0')"))!;
    expect(await value(db.pool, "select pgq.current_event_table('myqueue')")).toBe(`pgq.event_${qid}_0`);

    expect(await num(db.pool, "select pgq.maint_rotate_tables_step1('myqueue')")).toBe(1);
    const { rows } = await db.pool.query(
      `select queue_cur_table, queue_switch_step2 is null as unconfirmed,
              queue_switch_step1 is not null as step1_set
         from pgq.queue where queue_name = 'myqueue'`,
    );
    expect(rows).toEqual([{ queue_cur_table: 1, unconfirmed: true, step1_set: true }]);
    expect(await num(db.pool, "select queue_cur_table from pgq.get_queue_info('myqueue')")).toBe(1);
    // not confirmed yet: no second rotation
    expect(await num(db.pool, "select pgq.maint_rotate_tables_step1('myqueue')")).toBe(0);

    expect(await num(db.pool, "select pgq.maint_rotate_tables_step2()")).toBe(1);
    const { rows: confirmed } = await db.pool.query(
      `select queue_switch_step2 is not null as confirmed, queue_switch_step2 > queue_switch_step1 as later
         from pgq.queue where queue_name = 'myqueue'`,
    );
    expect(confirmed).toEqual([{ confirmed: true, later: true }]);
    expect(await num(db.pool, "select pgq.maint_rotate_tables_step2()")).toBe(0);
  });

  it("new events go to table 1; the old one stays in table 0", async () => {
    after = (await num(db.pool, "select pgq.insert_event('myqueue', 'after', 'in table 1')"))!;
    expect(await value(db.pool, "select pgq.current_event_table('myqueue')")).toBe(`pgq.event_${qid}_1`);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_1 where ev_id = $1`, [after])).toBe(1);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_0 where ev_id = $1`, [before])).toBe(1);
    expect(await num(db.pool, `select count(*) from pgq.event_${qid}_1 where ev_id = $1`, [before])).toBe(0);
  });

  it("a batch spanning the switch reads tables 0 and 1 and returns both events in id order", async () => {
    await tick(db.pool, "myqueue");
    const batchId = (await nextBatchId(db.pool, "myqueue", "consumer"))!;
    const { rows } = await db.pool.query<{ t: string }>("select t from pgq.batch_event_tables($1) t", [batchId]);
    expect(rows.map((r) => r.t)).toEqual([`pgq.event_${qid}_0`, `pgq.event_${qid}_1`]);
    expect((await batchRows(db.pool, batchId)).map((e) => [e.ev_id, e.ev_type])).toEqual([
      [before, "before"],
      [after, "after"],
    ]);
    expect(await num(db.pool, "select pgq.finish_batch($1)", [batchId])).toBe(1);
  });

  it("the next batch, entirely after the switch, gets its event from table 1", async () => {
    const later = (await num(db.pool, "select pgq.insert_event('myqueue', 'later', 'x')"))!;
    await tick(db.pool, "myqueue");
    const batchId = (await nextBatchId(db.pool, "myqueue", "consumer"))!;
    const { rows } = await db.pool.query<{ t: string }>("select t from pgq.batch_event_tables($1) t", [batchId]);
    expect(rows.map((r) => r.t)).toContain(`pgq.event_${qid}_1`);
    expect((await batchRows(db.pool, batchId)).map((e) => e.ev_id)).toEqual([later]);
    expect(await num(db.pool, "select pgq.finish_batch($1)", [batchId])).toBe(1);
  });
});

describe("rotation through the TypeScript API", () => {
  it("rotateStep1 / rotateStep2 switch the slot table; a queue whose period has not passed does not rotate", async () => {
    await createQueue(db.pool, "tsqueue");
    await registerConsumer(db.pool, "tsqueue", "c");
    // default period is 2 hours: not due
    expect(await rotateStep1(db.pool, "tsqueue")).toBe(false);

    await waitForOlderTransactions(db.pool, await switchStep2(db.pool, "tsqueue"));
    const id = await insertEvent(db.pool, "tsqueue", { type: "x", data: null });
    await tick(db.pool, "tsqueue");
    expect((await drainBatch(db.pool, "tsqueue", "c"))!.map((e) => e.ev_id)).toEqual([id]);

    await setQueueConfig(db.pool, "tsqueue", "rotation_period", "0");
    expect(await rotateStep1(db.pool, "tsqueue")).toBe(true);
    expect(await rotateStep2(db.pool)).toBe(1);
    const [info] = await getQueueInfo(db.pool, "tsqueue");
    expect(info).toMatchObject({ curTable: 1, rotationPeriodSeconds: 0 });

    const next = await insertEvent(db.pool, "tsqueue", { type: "y", data: null });
    await tick(db.pool, "tsqueue");
    expect((await drainBatch(db.pool, "tsqueue", "c"))!.map((e) => e.ev_id)).toEqual([next]);
  });
});
