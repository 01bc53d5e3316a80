/**
 * Randomized concurrency soak (docs/pgq.md, "How it works": every event is
 * in exactly one batch): at the same time
 *   * four writers on their own connections run overlapping short and long
 *     transactions (long ones insert in several chunks over up to ~1.5 s,
 *     across ticks and table rotations), some of which roll back;
 *   * a ticker connection loops force_tick + ticker;
 *   * a maintenance connection rotates as often as the guard allows
 *     (rotation period 0: step1 and step2 in separate transactions);
 *   * consumer A, registered before anything happens, and consumer B,
 *     registered mid-stream, read batches (A through the SQL API, B through
 *     the TypeScript cursor API), and now and then "crash" with a batch
 *     open and check that it comes back the same.
 * Every event records which transaction made it and whether that
 * committed. At the end each consumer must have received every committed
 * event it should see exactly once (for B: the events whose txid was not
 * visible in its registration tick, decided on the server with
 * pg_visible_in_snapshot), and nothing from a rolled-back transaction.
 *
 * PGQ_SOAK_SEED=<n> replays a run's random choices (timing still varies).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { batchEvents, finishBatch, installPgq, nextBatch } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { Connections, num, rng, sleep, snapshotRegressions, tick, value } from "./helpers.ts";
import { MachineClock } from "../support/wait.ts";

let db: TestDatabase;
let conns: Connections;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-soak");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await db?.drop();
});

const QUEUE = "soak";
const TARGET_COMMITTED = 100_000;
const MIN_ROTATIONS = 3;
/** Writers stop at the targets; this (machine time, see wait.ts) only ends a run that cannot reach them. */
const TIME_LIMIT_MS = 300_000;

interface Tx {
  writer: number;
  seq: number;
  txid: number;
  ids: number[];
  committed: boolean;
  long: boolean;
}

class Delivery {
  readonly count = new Map<number, number>();
  readonly txidOf = new Map<number, number>();
  batches = 0;
  listPath = 0;
  reopened = 0;

  add(id: number, txid: number): void {
    this.count.set(id, (this.count.get(id) ?? 0) + 1);
    this.txidOf.set(id, txid);
  }
}

describe("randomized soak: writers, ticker, rotation and two consumers at once", () => {
  it(`delivers every committed event exactly once to each consumer that should see it (>= ${TARGET_COMMITTED} events)`, { timeout: 900_000 }, async () => {
    const seed = Number(process.env.PGQ_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const started = Date.now();
    const clock = new MachineClock();
    const log = (msg: string) => console.log(`[soak seed=${seed} +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
    const random = rng(seed);

    await db.query("select pgq.create_queue($1)", [QUEUE]);
    await db.query("select pgq.set_queue_config($1, 'rotation_period', '0')", [QUEUE]);
    await db.query("select pgq.register_consumer($1, 'A')", [QUEUE]);

    const txs: Tx[] = [];
    let committedEvents = 0;
    let rotations = 0;
    let stopWriters = false;
    let stopBackground = false;
    let stopConsumers = false;
    const errors: unknown[] = [];
    const guard = async (name: string, work: () => Promise<void>) => {
      try {
        await work();
      } catch (error) {
        errors.push(error);
        log(`${name} failed: ${(error as Error).message}`);
        stopWriters = stopBackground = stopConsumers = true;
      }
    };

    // ---------------------------------------------------------------- writers
    const writer = async (w: number) => {
      const c = await conns.connect(`writer-${w}`);
      const r = rng(seed + 1000 * (w + 1));
      for (let seq = 0; !stopWriters; seq++) {
        const long = r.chance(0.2);
        const tag = `${w}:${seq}`;
        await c.query("begin");
        if (r.chance(0.3)) await c.query("select 1"); // a snapshot before the txid exists
        const ids: number[] = [];
        const chunks = long ? r.int(2, 5) : r.int(1, 2);
        for (let k = 0; k < chunks; k++) {
          const n = long ? r.int(50, 800) : r.int(1, 200);
          const { rows } = await c.query<{ id: string }>(
            `select pgq.insert_event($1, 'ev', $2 || ':' || g) as id from generate_series(1, $3::int) g`,
            [QUEUE, tag, n],
          );
          for (const row of rows) ids.push(Number(row.id));
          if (long) await sleep(r.int(50, 400));
          else if (r.chance(0.2)) await sleep(r.int(0, 10));
        }
        const txid = (await num(c, "select pg_current_xact_id()::text::int8"))!;
        const committed = !r.chance(long ? 0.2 : 0.12);
        await c.query(committed ? "commit" : "rollback");
        txs.push({ writer: w, seq, txid, ids, committed, long });
        if (committed) committedEvents += ids.length;
        if (committedEvents >= TARGET_COMMITTED && rotations >= MIN_ROTATIONS) stopWriters = true;
        if (clock.elapsed() > TIME_LIMIT_MS) stopWriters = true;
      }
    };

    // ---------------------------------------------------------------- ticker and rotation
    const ticker = async () => {
      const c = await conns.connect("ticker");
      while (!stopBackground) {
        await c.query("select pgq.force_tick($1)", [QUEUE]);
        await c.query("select pgq.ticker($1)", [QUEUE]);
        await sleep(random.int(5, 40));
      }
    };
    const rotator = async () => {
      const c = await conns.connect("rotator");
      c.on("notice", () => {}); // "cannot lock ..., skipping rotation" is expected now and then
      while (!stopBackground) {
        if ((await num(c, "select pgq.maint_rotate_tables_step1($1)", [QUEUE])) === 1) rotations++;
        await c.query("select pgq.maint_rotate_tables_step2()");
        await sleep(random.int(10, 60));
      }
    };

    // ---------------------------------------------------------------- consumers
    const gotA = new Delivery();
    const gotB = new Delivery();

    /** Consumer A: next_batch_info, batch_event_sql run by hand, finish_batch. */
    const consumerA = async () => {
      const c = await conns.connect("consumer-A");
      const r = rng(seed + 7);
      for (;;) {
        // Read the flag before asking: a null from before the final tick must not end the loop.
        const last = stopConsumers;
        const b = await value<string | null>(c, "select pgq.next_batch($1, 'A')", [QUEUE]);
        if (b === null) {
          if (last) return;
          await sleep(5);
          continue;
        }
        const sql = await value<string>(c, "select pgq.batch_event_sql($1)", [b]);
        if (sql.includes("= any(")) gotA.listPath++;
        const { rows } = await c.query<{ ev_id: string; ev_txid: string }>(sql);
        if (r.chance(0.03)) {
          // crash with the batch open: a new connection must get the same batch and events
          const again = await conns.connect("consumer-A-again");
          expect(await value<string>(again, "select pgq.next_batch($1, 'A')", [QUEUE])).toBe(b);
          const { rows: rows2 } = await again.query<{ ev_id: string; ev_txid: string }>(
            await value<string>(again, "select pgq.batch_event_sql($1)", [b]),
          );
          expect(rows2).toEqual(rows);
          await again.end();
          gotA.reopened++;
        }
        for (const row of rows) gotA.add(Number(row.ev_id), Number(row.ev_txid));
        gotA.batches++;
        expect(await num(c, "select pgq.finish_batch($1)", [b])).toBe(1);
      }
    };

    /** Consumer B: registered mid-stream; TypeScript nextBatch / batchEvents (cursor) / finishBatch. */
    let regTick: number | undefined;
    let regSnapshot: string | undefined;
    const consumerB = async () => {
      while (committedEvents < TARGET_COMMITTED * 0.4 && !stopConsumers) await sleep(20);
      const c = await conns.connect("consumer-B");
      await c.query("select pgq.register_consumer($1, 'B')", [QUEUE]);
      const { rows } = await c.query<{ tick_id: string; snap: string }>(
        `select s.sub_last_tick::text as tick_id, t.tick_snapshot::text as snap
           from pgq.subscription s
           join pgq.consumer co on co.co_id = s.sub_consumer
           join pgq.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
          where co.co_name = 'B'`,
      );
      regTick = Number(rows[0]!.tick_id);
      regSnapshot = rows[0]!.snap;
      log(`B registered at tick ${regTick} (${regSnapshot.slice(0, 60)}), ${committedEvents} committed events so far`);
      const reader = await conns.connect("consumer-B-reader");
      const r = rng(seed + 8);
      for (;;) {
        const last = stopConsumers;
        const info = await nextBatch(c, QUEUE, "B");
        if (!info) {
          if (last) return;
          await sleep(5);
          continue;
        }
        await reader.query("begin");
        const events: Array<[number, number]> = [];
        for await (const e of batchEvents(reader, info.batchId, 500)) events.push([e.id, e.txid]);
        await reader.query("commit");
        if (r.chance(0.03)) {
          const again = await nextBatch(c, QUEUE, "B");
          expect(again).toEqual(info);
          const events2: Array<[number, number]> = [];
          await reader.query("begin");
          for await (const e of batchEvents(reader, info.batchId, 700)) events2.push([e.id, e.txid]);
          await reader.query("commit");
          expect(events2).toEqual(events);
          gotB.reopened++;
        }
        for (const [id, txid] of events) gotB.add(id, txid);
        gotB.batches++;
        expect(await finishBatch(c, info.batchId)).toBe(true);
      }
    };

    // ---------------------------------------------------------------- run
    const background = [guard("ticker", ticker), guard("rotator", rotator)];
    const consumers = [guard("consumer A", consumerA), guard("consumer B", consumerB)];
    const progress = setInterval(
      () => log(`${committedEvents} committed in ${txs.length} transactions, ${rotations} rotations, A ${gotA.count.size} / B ${gotB.count.size} received`),
      5000,
    );
    try {
      await Promise.all([0, 1, 2, 3].map((w) => guard(`writer ${w}`, () => writer(w))));
      stopBackground = true;
      await Promise.all(background);
      await tick(db.pool, QUEUE); // after every writer has finished: the last tick covers everything
      stopConsumers = true;
      await Promise.all(consumers);
    } finally {
      clearInterval(progress);
      stopWriters = stopBackground = stopConsumers = true;
    }
    const committedTxs = txs.filter((t) => t.committed);
    const rolledBackTxs = txs.filter((t) => !t.committed);
    log(
      `done: ${txs.length} transactions (${txs.filter((t) => t.long).length} long, ${rolledBackTxs.length} rolled back), ` +
        `${committedEvents} committed events, ${rotations} rotations, ` +
        `A: ${gotA.batches} batches (${gotA.listPath} via the txid list, ${gotA.reopened} reopened), ` +
        `B: ${gotB.batches} batches (${gotB.reopened} reopened)`,
    );
    expect(errors).toEqual([]);
    // Both consumers read up to the final tick: nothing is left for them.
    expect(await value(db.pool, "select pgq.next_batch($1, 'A')", [QUEUE])).toBeNull();
    expect(await value(db.pool, "select pgq.next_batch($1, 'B')", [QUEUE])).toBeNull();

    // the run was what it claims to be
    expect(committedEvents).toBeGreaterThanOrEqual(TARGET_COMMITTED);
    expect(rolledBackTxs.length).toBeGreaterThan(0);
    expect(rotations).toBeGreaterThanOrEqual(MIN_ROTATIONS);
    expect(regTick).toBeDefined();
    expect(await snapshotRegressions(db.pool, QUEUE)).toEqual([]);

    // which transactions B should see: not visible in its registration tick
    const { rows: vis } = await db.query<{ txid: string; visible: boolean }>(
      "select t::text as txid, pg_visible_in_snapshot(t::text::xid8, $2::pg_snapshot) as visible from unnest($1::int8[]) t",
      [committedTxs.map((t) => t.txid), regSnapshot],
    );
    const visibleAtReg = new Map(vis.map((v) => [Number(v.txid), v.visible]));
    const forB = committedTxs.filter((t) => !visibleAtReg.get(t.txid));
    expect(forB.length).toBeGreaterThan(0);
    expect(forB.length).toBeLessThan(committedTxs.length);

    const check = (name: string, got: Delivery, expected: Tx[]) => {
      const problems: string[] = [];
      const expectedIds = new Set<number>();
      for (const t of expected) {
        for (const id of t.ids) {
          expectedIds.add(id);
          const n = got.count.get(id) ?? 0;
          if (n !== 1) problems.push(`${name}: event ${id} of tx ${t.writer}:${t.seq} (txid ${t.txid}, long ${t.long}) received ${n} times`);
          else if (got.txidOf.get(id) !== t.txid) problems.push(`${name}: event ${id} has txid ${got.txidOf.get(id)}, its transaction ${t.txid}`);
        }
      }
      for (const t of rolledBackTxs) {
        for (const id of t.ids) if (got.count.has(id)) problems.push(`${name}: event ${id} of rolled-back tx ${t.writer}:${t.seq} received`);
      }
      for (const id of got.count.keys()) {
        if (!expectedIds.has(id) && !rolledBackTxs.some((t) => t.ids.includes(id))) problems.push(`${name}: unexpected event ${id}`);
      }
      expect(problems.slice(0, 20)).toEqual([]);
      expect(got.count.size).toBe(expectedIds.size);
    };
    check("A", gotA, committedTxs);
    check("B", gotB, forB);
  });
});
