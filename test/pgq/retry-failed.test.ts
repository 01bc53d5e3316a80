/**
 * The failed queue, event_retry and the retry mover, event_retry_raw
 * (docs/pgq.md, "How it works"). A second consumer on the same queue
 * checks that retried events go to their owner only. Then the same through the
 * TypeScript API (failEvent, retryEvent, moveRetryEvents, Consumer).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Consumer,
  createQueue,
  failEvent,
  getBatchEvents,
  insertEvent,
  installPgq,
  moveRetryEvents,
  nextBatch,
  finishBatch,
  registerConsumer,
  retryEvent,
  tickNow,
  type PgqEvent,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, drainBatch, nextBatchId, num, tick } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-retry-failed");
  await installPgq(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

describe("the failed queue, event_retry and event_retry_raw in SQL", () => {
  let ids: number[];
  let batchId: number;
  let subId: number;

  beforeAll(async () => {
    await db.pool.query("select pgq.create_queue('myqueue')");
    await db.pool.query("select pgq.register_consumer('myqueue', 'consumer')");
    await db.pool.query("select pgq.register_consumer('myqueue', 'other')");
    subId = (await num(
      db.pool,
      `select s.sub_id from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
        where c.co_name = 'consumer'`,
    ))!;
    ids = [];
    for (const type of ["r1", "r2", "r3"]) {
      ids.push((await num(db.pool, "select pgq.insert_event('myqueue', $1, 'data')", [type]))!);
    }
    await tick(db.pool, "myqueue");
    batchId = (await nextBatchId(db.pool, "myqueue", "consumer"))!;
    // the other consumer reads and finishes the same events
    expect((await drainBatch(db.pool, "myqueue", "other"))!.map((e) => e.ev_id)).toEqual(ids);
  });

  it("event_failed returns 1, then 0; the failed list, its paging, count and delete", async () => {
    expect((await batchRows(db.pool, batchId)).map((e) => e.ev_id)).toEqual(ids);
    expect(await num(db.pool, "select pgq.event_failed($1, $2, 'failure test')", [batchId, ids[0]])).toBe(1);
    expect(await num(db.pool, "select pgq.event_failed($1, $2, 'failure test')", [batchId, ids[0]])).toBe(0);
    // the retried event of the next test is tagged in the same batch, before the finish
    expect(await num(db.pool, "select pgq.event_retry($1, $2, 0)", [batchId, ids[1]])).toBe(1);
    expect(await num(db.pool, "select pgq.event_retry($1, $2, 0)", [batchId, ids[1]])).toBe(0);
    expect(await num(db.pool, "select pgq.finish_batch($1)", [batchId])).toBe(1);

    const { rows } = await db.pool.query(
      `select ev_failed_reason, ev_id::int, ev_txid, ev_retry, ev_type, ev_data, ev_owner,
              ev_failed_time > now() - interval '1 minute' as recent
         from pgq.failed_event_list('myqueue', 'consumer')`,
    );
    expect(rows).toEqual([
      {
        ev_failed_reason: "failure test",
        ev_id: ids[0],
        ev_txid: null,
        ev_retry: 0,
        ev_type: "r1",
        ev_data: "data",
        ev_owner: subId,
        recent: true,
      },
    ]);
    expect(await num(db.pool, "select count(*) from pgq.failed_event_list('myqueue', 'consumer', 0, 1)")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.failed_event_list('myqueue', 'consumer', 1, 0)")).toBe(1);
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'other')")).toBe(0);
    await expect(db.pool.query("select pgq.failed_event_delete('myqueue', 'consumer', 0)")).rejects.toThrow(
      /^event not found$/,
    );
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'consumer')")).toBe(1);
  });

  it("the retried event waits in retry_queue (owner, retry 1, no txid) and comes back to its owner only", async () => {
    const { rows: waiting } = await db.pool.query(
      "select ev_id::int, ev_owner, ev_retry, ev_txid, ev_type from pgq.retry_queue",
    );
    expect(waiting).toEqual([{ ev_id: ids[1], ev_owner: subId, ev_retry: 1, ev_txid: null, ev_type: "r2" }]);

    expect(await num(db.pool, "select pgq.maint_retry_events()")).toBe(1);
    expect(await num(db.pool, "select pgq.maint_retry_events()")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(0);
    await tick(db.pool, "myqueue");

    const back = (await drainBatch(db.pool, "myqueue", "consumer"))!;
    expect(back).toHaveLength(1);
    expect(back[0]).toMatchObject({ ev_id: ids[1], ev_retry: 1, ev_type: "r2", ev_data: "data" });
    // a new txid: it is delivered in this later batch, not the original one
    expect(back[0]!.ev_txid).toBeGreaterThan(0);
    expect(await drainBatch(db.pool, "myqueue", "other")).toEqual([]);
  });

  it("an event retried with a future time is not moved before it is due", async () => {
    await db.pool.query("select pgq.insert_event('myqueue', 'later', 'x')");
    await tick(db.pool, "myqueue");
    const b = (await nextBatchId(db.pool, "myqueue", "consumer"))!;
    const [ev] = await batchRows(db.pool, b);
    expect(
      await num(db.pool, "select pgq.event_retry($1, $2, now() + interval '1 hour')", [b, ev!.ev_id]),
    ).toBe(1);
    await db.pool.query("select pgq.finish_batch($1)", [b]);
    await drainBatch(db.pool, "myqueue", "other");

    expect(await num(db.pool, "select pgq.maint_retry_events()")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(1);
    await tick(db.pool, "myqueue");
    expect(await drainBatch(db.pool, "myqueue", "consumer")).toEqual([]);
    await drainBatch(db.pool, "myqueue", "other");
    await db.pool.query("delete from pgq.retry_queue");
  });

  it("event_retry_raw(..., 666, ...) returns 666 and the event reaches only its owner", async () => {
    expect(
      await num(
        db.pool,
        `select pgq.event_retry_raw('myqueue', 'consumer', now(), 666, now(), 0,
                                    'rawtest', 'data', 'x1', null, null, 'x4')`,
      ),
    ).toBe(666);
    expect(await num(db.pool, "select pgq.maint_retry_events()")).toBe(1);
    await tick(db.pool, "myqueue");

    const got = (await drainBatch(db.pool, "myqueue", "consumer"))!;
    expect(got).toEqual([
      {
        ev_id: 666,
        ev_txid: got[0]!.ev_txid,
        ev_retry: 1,
        ev_type: "rawtest",
        ev_data: "data",
        ev_extra1: "x1",
        ev_extra2: null,
        ev_extra3: null,
        ev_extra4: "x4",
      },
    ]);
    expect(await drainBatch(db.pool, "myqueue", "other")).toEqual([]);
  });

  it("failed_event_retry puts the failed event back for its owner only, same id and retry count", async () => {
    expect(await num(db.pool, "select pgq.failed_event_retry('myqueue', 'consumer', $1)", [ids[0]])).toBe(ids[0]);
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'consumer')")).toBe(0);
    await tick(db.pool, "myqueue");
    const got = (await drainBatch(db.pool, "myqueue", "consumer"))!;
    expect(got.map((e) => [e.ev_id, e.ev_retry, e.ev_type])).toEqual([[ids[0], 0, "r1"]]);
    expect(await drainBatch(db.pool, "myqueue", "other")).toEqual([]);
  });

  it("failed_event_delete removes a failed event", async () => {
    await db.pool.query("select pgq.insert_event('myqueue', 'doomed', 'x')");
    await tick(db.pool, "myqueue");
    const b = (await nextBatchId(db.pool, "myqueue", "consumer"))!;
    const [ev] = await batchRows(db.pool, b);
    expect(await num(db.pool, "select pgq.event_failed($1, $2, 'no good')", [b, ev!.ev_id])).toBe(1);
    await db.pool.query("select pgq.finish_batch($1)", [b]);
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'consumer')")).toBe(1);
    expect(await num(db.pool, "select pgq.failed_event_delete('myqueue', 'consumer', $1)", [ev!.ev_id])).toBe(1);
    expect(await num(db.pool, "select pgq.failed_event_count('myqueue', 'consumer')")).toBe(0);
    await drainBatch(db.pool, "myqueue", "other");
  });
});

describe("failEvent / retryEvent / Consumer through the TypeScript API", () => {
  beforeAll(async () => {
    await createQueue(db.pool, "tsqueue");
    await registerConsumer(db.pool, "tsqueue", "c1");
    await registerConsumer(db.pool, "tsqueue", "c2");
  });

  async function openBatch(consumer: string) {
    const batch = (await nextBatch(db.pool, "tsqueue", consumer))!;
    expect(batch).not.toBeNull();
    return { batch, events: await getBatchEvents(db.pool, batch.batchId) };
  }

  it("failEvent is true then false; retryEvent brings the event back to its owner with retry 1", async () => {
    const a = await insertEvent(db.pool, "tsqueue", { type: "a", data: "1", extra2: "keep" });
    const b = await insertEvent(db.pool, "tsqueue", { type: "b", data: "2" });
    await tickNow(db.pool, "tsqueue");
    const { batch, events } = await openBatch("c1");
    expect(events.map((e) => e.id)).toEqual([a, b]);

    expect(await failEvent(db.pool, batch.batchId, b, "broken")).toBe(true);
    expect(await failEvent(db.pool, batch.batchId, b, "broken")).toBe(false);
    await retryEvent(db.pool, "tsqueue", "c1", events[0]!, 0);
    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
    const other = await openBatch("c2");
    expect(other.events.map((e) => e.id)).toEqual([a, b]);
    await finishBatch(db.pool, other.batch.batchId);

    expect(await num(db.pool, "select pgq.failed_event_count('tsqueue', 'c1')")).toBe(1);
    expect(await moveRetryEvents(db.pool)).toBe(1);
    expect(await moveRetryEvents(db.pool)).toBe(0);
    await tickNow(db.pool, "tsqueue");

    const again = await openBatch("c1");
    expect(again.events).toHaveLength(1);
    expect(again.events[0]).toMatchObject({ id: a, retry: 1, type: "a", data: "1", extra2: "keep" });
    expect(again.events[0]!.time).toEqual(events[0]!.time);
    // a second retry counts up
    await retryEvent(db.pool, "tsqueue", "c1", again.events[0]!, 0);
    await finishBatch(db.pool, again.batch.batchId);
    const c2 = await openBatch("c2");
    expect(c2.events).toEqual([]);
    await finishBatch(db.pool, c2.batch.batchId);

    expect(await moveRetryEvents(db.pool)).toBe(1);
    await tickNow(db.pool, "tsqueue");
    const third = await openBatch("c1");
    expect(third.events.map((e) => [e.id, e.retry])).toEqual([[a, 2]]);
    await finishBatch(db.pool, third.batch.batchId);
    await finishBatch(db.pool, (await openBatch("c2")).batch.batchId);
  });

  it("Consumer.processOne: handler tags become retry/failed rows and the batch is finished", async () => {
    const ok = await insertEvent(db.pool, "tsqueue", { type: "ok", data: null });
    const retry = await insertEvent(db.pool, "tsqueue", { type: "retry-me", data: null });
    const fail = await insertEvent(db.pool, "tsqueue", { type: "fail-me", data: null });
    const tickId = await tickNow(db.pool, "tsqueue");

    const seen: PgqEvent[] = [];
    const consumer = new Consumer({
      pool: db.pool,
      queue: "tsqueue",
      consumer: "c1",
      handler: async (batch) => {
        for await (const ev of batch.events()) {
          seen.push(ev);
          if (ev.type === "retry-me") batch.retry(ev, 3600);
          if (ev.type === "fail-me") batch.fail(ev, "handler said no");
        }
      },
    });
    const info = await consumer.processOne();
    expect(info).toMatchObject({ tickId });
    expect(seen.map((e) => e.id)).toEqual([ok, retry, fail]);
    expect(await consumer.processOne()).toBeNull();

    const { rows: retries } = await db.pool.query(
      "select ev_id::int, ev_retry, ev_retry_after > now() + interval '50 minutes' as later from pgq.retry_queue",
    );
    expect(retries).toEqual([{ ev_id: retry, ev_retry: 1, later: true }]);
    const { rows: failed } = await db.pool.query(
      "select ev_id::int, ev_failed_reason from pgq.failed_event_list('tsqueue', 'c1') where ev_id = $1",
      [fail],
    );
    expect(failed).toEqual([{ ev_id: fail, ev_failed_reason: "handler said no" }]);
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('tsqueue', 'c1')")).toBe(tickId);
  });
});
