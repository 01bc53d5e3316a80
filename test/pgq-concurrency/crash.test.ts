/**
 * Crash with an open batch (docs/pgq.md, "How it works": an open batch is
 * sticky): a consumer that dies
 * with a batch open gets, on a new connection (a new pool, as a restarted
 * process would), the same batch id with the same ticks and identical
 * events. Work it did in the uncommitted finishing transaction (retry and
 * failed tags, finish_batch) is gone. Ticks and events that arrive
 * meanwhile do not change the open batch.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Consumer, type BatchInfo, type OpenBatch, type PgqEvent, installPgq, nextBatch } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, Connections, drainAll, drainOne, ids, num, openBatch, sleep, subId, tick } from "./helpers.ts";

let db: TestDatabase;
let conns: Connections;
const pools: pg.Pool[] = [];

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-crash");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  await db?.drop();
});

function newPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  pool.on("error", () => {});
  pools.push(pool);
  return pool;
}

/** Kills a backend the way a crash would look to the server. */
async function kill(client: pg.Client): Promise<void> {
  const pid = (client as unknown as { processID: number }).processID;
  expect(await num(db.pool, "select count(*) from pg_stat_activity where pid = $1", [pid])).toBe(1);
  await db.query("select pg_terminate_backend($1)", [pid]);
  for (let i = 0; i < 100 && (await num(db.pool, "select count(*) from pg_stat_activity where pid = $1", [pid])) !== 0; i++) {
    await sleep(20);
  }
  await expect(client.query("select 1")).rejects.toThrow();
}

describe("crash with an open batch", () => {
  it("killed in the middle of finishing: the new connection gets the same batch and identical events; the tags are gone", async () => {
    await db.query("select pgq.create_queue('crash')");
    await db.query("select pgq.register_consumer('crash', 'c')");
    const expected: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { rows } = await db.query<{ id: string }>(
        "select pgq.insert_event('crash', 't' || g, 'd' || g, 'x1', null, 'x3', g::text) as id from generate_series(1, 5) g",
      );
      expected.push(...rows.map((r) => Number(r.id)));
    }
    await tick(db.pool, "crash");

    const worker = await conns.connect("consumer-1");
    const b = (await openBatch(worker, "crash", "c"))!;
    const events = await batchRows(worker, b.batchId);
    expect(ids(events)).toEqual(expected);
    await worker.query("begin");
    expect(await num(worker, "select pgq.event_retry($1, $2, 0)", [b.batchId, expected[0]])).toBe(1);
    expect(await num(worker, "select pgq.event_failed($1, $2, 'boom')", [b.batchId, expected[1]])).toBe(1);
    expect(await num(worker, "select pgq.finish_batch($1)", [b.batchId])).toBe(1);
    await kill(worker);

    // life goes on meanwhile
    const later = (await num(db.pool, "select pgq.insert_event('crash', 'later', 'x')"))!;
    const nextTick = await tick(db.pool, "crash");

    const pool = newPool();
    const again = (await openBatch(pool, "crash", "c"))!;
    expect(again).toEqual(b);
    expect(await batchRows(pool, again.batchId)).toEqual(events);
    const sub = await subId(pool, "crash", "c");
    expect(await num(pool, "select count(*) from pgq.retry_queue where ev_owner = $1", [sub])).toBe(0);
    expect(await num(pool, "select count(*) from pgq.failed_queue where ev_owner = $1", [sub])).toBe(0);
    const { rows: info } = await pool.query("select current_batch::int, next_tick::int from pgq.get_consumer_info('crash', 'c')");
    expect(info).toEqual([{ current_batch: b.batchId, next_tick: b.curTick }]);

    // finishing now moves on to the events that came after the crash
    expect(await num(pool, "select pgq.finish_batch($1)", [b.batchId])).toBe(1);
    const rest = await drainAll(pool, "crash", "c");
    expect(rest.map((x) => [x.prevTick, x.curTick, ids(x.events)])).toEqual([[b.curTick, nextTick, [later]]]);
  });

  it("killed right after next_batch committed, and again while reading: the same batch every time", async () => {
    await db.query("select pgq.create_queue('crash2')");
    await db.query("select pgq.register_consumer('crash2', 'c')");
    await db.query("select pgq.insert_event('crash2', 'e', g::text) from generate_series(1, 3000) g");
    await tick(db.pool, "crash2");

    const first = await conns.connect("consumer-a");
    const b = (await openBatch(first, "crash2", "c"))!;
    await kill(first);

    // the second one dies half way through a cursor read
    const second = await conns.connect("consumer-b");
    expect(await openBatch(second, "crash2", "c")).toEqual(b);
    await second.query("begin");
    const sql = (await second.query<{ s: string }>("select pgq.batch_event_sql($1) as s", [b.batchId])).rows[0]!.s;
    await second.query(`declare cur no scroll cursor for ${sql}`);
    const part = await second.query("fetch 1000 from cur");
    expect(part.rows).toHaveLength(1000);
    await kill(second);

    const pool = newPool();
    expect(await openBatch(pool, "crash2", "c")).toEqual(b);
    const events = await batchRows(pool, b.batchId);
    expect(events).toHaveLength(3000);
    expect(events.slice(0, 1000).map((e) => e.ev_id)).toEqual(part.rows.map((r) => Number(r.ev_id)));
    const done = await drainOne(pool, "crash2", "c");
    expect(done!.batchId).toBe(b.batchId);
    expect(done!.events).toEqual(events);
  });

  it("killed before next_batch committed: no batch was opened, the next one covers the same ticks and events", async () => {
    await db.query("select pgq.create_queue('crash3')");
    await db.query("select pgq.register_consumer('crash3', 'c')");
    const e = (await num(db.pool, "select pgq.insert_event('crash3', 'e', 'x')"))!;
    await tick(db.pool, "crash3");

    const worker = await conns.connect("consumer-uncommitted");
    await worker.query("begin");
    const lost = (await openBatch(worker, "crash3", "c"))!;
    await kill(worker);

    const pool = newPool();
    expect(await num(pool, "select current_batch from pgq.get_consumer_info('crash3', 'c')")).toBeNull();
    const b = (await openBatch(pool, "crash3", "c"))!;
    expect([b.prevTick, b.curTick]).toEqual([lost.prevTick, lost.curTick]);
    expect(ids(await batchRows(pool, b.batchId))).toEqual([e]);
  });

  it("the TypeScript Consumer: a handler that dies leaves the batch open; a new process on a new pool gets it whole", async () => {
    await db.query("select pgq.create_queue('crashts')");
    await db.query("select pgq.register_consumer('crashts', 'c')");
    await db.query("select pgq.insert_event('crashts', 'e', g::text) from generate_series(1, 2500) g");
    await tick(db.pool, "crashts");

    const poolA = newPool();
    const seenA: PgqEvent[] = [];
    let infoA: BatchInfo | undefined;
    const a = new Consumer({
      pool: poolA,
      queue: "crashts",
      consumer: "c",
      fetchSize: 500,
      handler: async (batch: OpenBatch) => {
        infoA = batch.info;
        for await (const ev of batch.events()) {
          seenA.push(ev);
          batch.retry(ev, 0);
          if (seenA.length === 1200) throw new Error("process died");
        }
      },
    });
    await expect(a.processOne()).rejects.toThrow("process died");
    await poolA.end();
    pools.splice(pools.indexOf(poolA), 1);

    await db.query("select pgq.insert_event('crashts', 'after', 'x')");
    await tick(db.pool, "crashts");

    const poolB = newPool();
    const seenB: PgqEvent[] = [];
    const b = new Consumer({
      pool: poolB,
      queue: "crashts",
      consumer: "c",
      fetchSize: 700,
      handler: async (batch: OpenBatch) => {
        for await (const ev of batch.events()) seenB.push(ev);
      },
    });
    const infoB = await b.processOne();
    expect(infoB).toEqual(infoA);
    expect(seenB).toHaveLength(2500);
    expect(seenB.slice(0, 1200)).toEqual(seenA);
    expect(await num(poolB, "select count(*) from pgq.retry_queue")).toBe(0);
    // then the event that came after the crash, in the next batch
    const next = await nextBatch(poolB, "crashts", "c");
    expect(next!.prevTickId).toBe(infoA!.tickId);
    expect((await batchRows(poolB, next!.batchId)).map((e) => e.ev_type)).toEqual(["after"]);
  });

  it("the TypeScript Consumer: a handler that dies while reading returns its connection outside any transaction, and the batch comes back", async () => {
    await db.query("select pgq.create_queue('crashthrow')");
    await db.query("select pgq.register_consumer('crashthrow', 'c')");
    await db.query("select pgq.insert_event('crashthrow', 'e', g::text) from generate_series(1, 10) g");
    await tick(db.pool, "crashthrow");

    // one connection: whatever events() leaves on it, the next user gets
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on("error", () => {});
    pools.push(pool);
    let dies = true;
    const seen: string[] = [];
    const consumer = new Consumer({
      pool,
      queue: "crashthrow",
      consumer: "c",
      handler: async (batch: OpenBatch) => {
        for await (const ev of batch.events()) {
          if (dies && ev.data === "2") throw new Error("handler died");
          seen.push(ev.data!);
        }
      },
    });
    await expect(consumer.processOne()).rejects.toThrow("handler died");
    const { rows: state } = await pool.query(
      "select now() = statement_timestamp() as own_transaction, current_setting('transaction_read_only') as read_only",
    );
    expect(state).toEqual([{ own_transaction: true, read_only: "off" }]);
    dies = false;
    seen.length = 0;
    expect(await consumer.processOne()).not.toBeNull();
    expect(seen).toHaveLength(10);
    expect(await num(db.pool, "select current_batch from pgq.get_consumer_info('crashthrow', 'c')")).toBeNull();
  });

  it("the TypeScript Consumer: a handler that stops reading early (break) still gets its tags written and the batch finished", async () => {
    await db.query("select pgq.create_queue('crashbreak')");
    await db.query("select pgq.register_consumer('crashbreak', 'c')");
    await db.query("select pgq.insert_event('crashbreak', 'e', g::text) from generate_series(1, 10) g");
    await tick(db.pool, "crashbreak");

    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on("error", () => {});
    pools.push(pool);
    let first: PgqEvent | undefined;
    const breaker = new Consumer({
      pool,
      queue: "crashbreak",
      consumer: "c",
      handler: async (batch: OpenBatch) => {
        for await (const ev of batch.events()) {
          first = ev;
          batch.retry(ev, 0);
          break; // done after the first event: the rest counts as handled
        }
      },
    });
    const info = await breaker.processOne().catch((e: unknown) => e);
    expect(info).not.toBeInstanceOf(Error);
    expect(await num(db.pool, "select current_batch from pgq.get_consumer_info('crashbreak', 'c')")).toBeNull();
    const { rows } = await db.query("select ev_id::int, ev_retry from pgq.retry_queue");
    expect(rows).toEqual([{ ev_id: first!.id, ev_retry: 1 }]);
  });
});
