/**
 * Concurrent tick requests (docs/pgq-rotation-and-txids.md, "Ticks never
 * go backwards"): several
 * connections ask for ticks at the same time while producers insert. Tick
 * ids and snapshots must grow together (for consecutive ticks, every txid
 * visible in tick n is visible in tick n+1), otherwise events would be
 * delivered twice; here every committed event is delivered exactly once
 * and rolled-back ones never.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { batchRows, Connections, drainAll, num, openBatch, rng, sleep, snapshotRegressions, tick } from "./helpers.ts";
import { MachineClock } from "../support/wait.ts";

let db: TestDatabase;
let conns: Connections;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-concurrent-ticks");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await db?.drop();
});

describe("concurrent tick requests", () => {
  it("a ticker waiting for another one's lock takes a snapshot that contains everything the first one saw", async () => {
    await db.query("select pgq.create_queue('lock')");
    const [a, b, producer] = await Promise.all([conns.connect("ticker-a"), conns.connect("ticker-b"), conns.connect("producer")]);
    await producer.query("begin");
    await num(producer, "select pgq.insert_event('lock', 'x', 'y')");

    await a.query("select pgq.force_tick('lock')");
    await a.query("begin");
    const tickA = (await num(a, "select pgq.ticker('lock')"))!;
    await b.query("select pgq.force_tick('lock')");
    let bDone = false;
    const tickB = num(b, "select pgq.ticker('lock')").then((id) => {
      bDone = true;
      return id;
    });
    await sleep(300);
    expect(bDone).toBe(false); // waiting on a's ticker lock
    await producer.query("commit"); // finishes while a's tick is still uncommitted
    await a.query("commit");
    expect(await tickB).toBe(tickA + 1);
    expect(await snapshotRegressions(db.pool, "lock")).toEqual([]);
    const { rows } = await db.query<{ a_sees: boolean; b_sees: boolean }>(
      `select pg_visible_in_snapshot(x, (select tick_snapshot from pgq.tick where tick_id = $1 and tick_queue = k.tick_queue)) as a_sees,
              pg_visible_in_snapshot(x, (select tick_snapshot from pgq.tick where tick_id = $2 and tick_queue = k.tick_queue)) as b_sees
         from (select ev_txid as x from pgq.event_template limit 1) e, pgq.tick k
        where k.tick_id = $1 and k.tick_queue = (select queue_id from pgq.queue where queue_name = 'lock')`,
      [tickA, tickA + 1],
    );
    expect(rows).toEqual([{ a_sees: false, b_sees: true }]);
  });

  it("the ticker refuses to run under REPEATABLE READ (it would keep an old snapshot)", async () => {
    const c = await conns.connect("rr");
    await c.query("select pgq.force_tick('lock')");
    await c.query("begin isolation level repeatable read");
    await expect(c.query("select pgq.ticker('lock')")).rejects.toThrow(/READ COMMITTED/);
    await c.query("rollback");
  });

  it("four tickers and three producers at once: snapshots never go back, every committed event exactly once", async () => {
    await db.query("select pgq.create_queue('ct')");
    await db.query("select pgq.register_consumer('ct', 'c')");
    const random = rng(22);
    // At least 4 s (machine time, see wait.ts) and 100 tick calls: a slow machine makes the run longer, not thinner.
    const DURATION_MS = 4000;
    const MIN_TICK_CALLS = 100;
    const clock = new MachineClock();
    const running = () => (clock.elapsed() < DURATION_MS || tickCalls <= MIN_TICK_CALLS) && tickCalls < MIN_TICK_CALLS * 50;

    const tickers = await Promise.all([0, 1, 2, 3].map((i) => conns.connect(`ticker-${i}`)));
    const tickerErrors: unknown[] = [];
    let tickCalls = 0;
    const tickLoop = async (c: pg.Client, i: number) => {
      while (running()) {
        try {
          if (i === 3) {
            await c.query("select pgq.force_tick('ct')");
            await c.query("select pgq.ticker()"); // every queue
          } else {
            await c.query("select pgq.force_tick('ct')");
            await c.query("select pgq.ticker('ct')");
          }
          tickCalls++;
        } catch (error) {
          tickerErrors.push(error);
        }
        if (random.chance(0.3)) await sleep(random.int(0, 3));
      }
    };

    const producers = await Promise.all([0, 1, 2].map((i) => conns.connect(`producer-${i}`)));
    const committed = new Set<number>();
    const rolledBack = new Set<number>();
    const produce = async (c: pg.Client, p: number) => {
      while (running()) {
        await c.query("begin");
        const made: number[] = [];
        const parts = random.int(1, 3);
        for (let k = 0; k < parts; k++) {
          const { rows } = await c.query<{ id: string }>(
            "select pgq.insert_event('ct', 'p', $1::text || ':' || g) as id from generate_series(1, $2::int) g",
            [p, random.int(1, 40)],
          );
          made.push(...rows.map((r) => Number(r.id)));
          if (random.chance(0.5)) await sleep(random.int(0, 15));
        }
        if (random.chance(0.15)) {
          await c.query("rollback");
          for (const id of made) rolledBack.add(id);
        } else {
          await c.query("commit");
          for (const id of made) committed.add(id);
        }
      }
    };

    const consumer = await conns.connect("consumer");
    const delivered = new Map<number, number>();
    let stopConsumer = false;
    const consume = async () => {
      for (;;) {
        const b = await openBatch(consumer, "ct", "c");
        if (!b) {
          if (stopConsumer) return;
          await sleep(2);
          continue;
        }
        for (const e of await batchRows(consumer, b.batchId)) delivered.set(e.ev_id, (delivered.get(e.ev_id) ?? 0) + 1);
        await consumer.query("select pgq.finish_batch($1)", [b.batchId]);
      }
    };

    const consuming = consume();
    await Promise.all([...tickers.map((c, i) => tickLoop(c, i)), ...producers.map((c, i) => produce(c, i))]);
    await tick(db.pool, "ct");
    stopConsumer = true;
    await consuming;
    for (const b of await drainAll(db.pool, "ct", "c")) for (const e of b.events) delivered.set(e.ev_id, (delivered.get(e.ev_id) ?? 0) + 1);

    expect(tickerErrors).toEqual([]);
    const ticks = (await num(db.pool, "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'ct'"))!;
    expect(tickCalls).toBeGreaterThan(MIN_TICK_CALLS);
    expect(ticks).toBeGreaterThan(50);
    expect(await snapshotRegressions(db.pool, "ct")).toEqual([]);

    expect(committed.size).toBeGreaterThan(500);
    expect(rolledBack.size).toBeGreaterThan(0);
    const twice = [...delivered].filter(([, n]) => n !== 1);
    expect(twice).toEqual([]);
    expect([...delivered.keys()].filter((id) => rolledBack.has(id))).toEqual([]);
    expect(delivered.size).toBe(committed.size);
    expect([...committed].filter((id) => !delivered.has(id))).toEqual([]);
  });
});
