/**
 * Registering mid-stream and repositioning (docs/pgq.md, "How it works"):
 *   (a) a consumer registering mid-stream sits on the newest tick: it does
 *       not get what was committed before that tick, and does get every
 *       transaction that was not visible in it, including ones that started
 *       earlier and commit later, and ones that committed between the tick
 *       and the registration;
 *   (b) register_consumer(q, c, tick) repositions a consumer (forward or
 *       back), refuses unknown ticks and open batches, and consumption
 *       continues right after the given tick.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Queryable } from "../../shared/db/queryable.ts";
import { installPgq, PgqError, registerConsumer } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { allIds, Connections, drainAll, drainOne, ids, lastTick, num, openBatch, tick } from "./helpers.ts";

let db: TestDatabase;
let conns: Connections;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-register");
  await installPgq(db.pool);
  conns = new Connections(db.url);
});
afterAll(async () => {
  await conns?.closeAll();
  await db?.drop();
});

const insert = async (c: Queryable, queue: string, type: string) =>
  (await num(c, "select pgq.insert_event($1, $2, 'x')", [queue, type]))!;

describe("registering mid-stream", () => {
  it("gets the transactions not visible in its registration tick, and none committed before it", async () => {
    await db.query("select pgq.create_queue('mid')");
    expect(await registerConsumer(db.pool, "mid", "old")).toBe(true);
    const [early, middle] = await Promise.all([conns.connect("early"), conns.connect("middle")]);

    await early.query("begin");
    const eEarly = await insert(early, "mid", "early"); // started before the tick, commits after the registration
    const eBefore = await insert(db.pool, "mid", "before"); // committed before the tick
    const tickX = await tick(db.pool, "mid");
    await middle.query("begin");
    const eMiddle = await insert(middle, "mid", "middle"); // started after the tick, commits after the registration
    const eBetween = await insert(db.pool, "mid", "between"); // committed after the tick, before the registration

    expect(await registerConsumer(db.pool, "mid", "new")).toBe(true);
    expect(await lastTick(db.pool, "mid", "new")).toBe(tickX);
    expect(await registerConsumer(db.pool, "mid", "new")).toBe(false); // no move
    expect(await lastTick(db.pool, "mid", "new")).toBe(tickX);
    expect(await openBatch(db.pool, "mid", "new")).toBeNull(); // no tick after its position yet

    const eAfter = await insert(db.pool, "mid", "after");
    await early.query("commit");
    await middle.query("commit");
    const tickY = await tick(db.pool, "mid");

    const fresh = await drainAll(db.pool, "mid", "new");
    expect(fresh.map((b) => [b.prevTick, b.curTick])).toEqual([[tickX, tickY]]);
    expect(ids(fresh[0]!.events)).toEqual([eEarly, eMiddle, eBetween, eAfter]);
    expect(allIds(fresh)).not.toContain(eBefore);

    // the consumer registered first gets all five, each once
    const old = allIds(await drainAll(db.pool, "mid", "old"));
    expect(old.sort((a, b) => a - b)).toEqual([eEarly, eBefore, eMiddle, eBetween, eAfter]);
  });

  it("registering while producers keep committing: no event before the registration tick, every later one exactly once", async () => {
    await db.query("select pgq.create_queue('mid2')");
    await db.query("select pgq.register_consumer('mid2', 'old')");
    const producers = await Promise.all([0, 1, 2].map((i) => conns.connect(`prod-${i}`)));
    const txs: Array<{ txid: number; ids: number[] }> = [];
    let stop = false;
    const run = async (c: (typeof producers)[number], k: number) => {
      while (!stop) {
        await c.query("begin");
        const { rows } = await c.query<{ id: string }>(
          "select pgq.insert_event('mid2', 'p', $1 || ':' || g) as id from generate_series(1, 20) g",
          [k],
        );
        const txid = Number((await c.query("select pg_current_xact_id()::text as t")).rows[0].t);
        await new Promise((r) => setTimeout(r, 5 + ((txs.length * 7) % 20)));
        await c.query("commit");
        txs.push({ txid, ids: rows.map((r) => Number(r.id)) });
      }
    };
    const running = producers.map((c, k) => run(c, k));
    for (let i = 0; i < 5; i++) {
      await tick(db.pool, "mid2");
      await new Promise((r) => setTimeout(r, 20));
    }
    await db.query("select pgq.register_consumer('mid2', 'new')");
    const regTick = await lastTick(db.pool, "mid2", "new");
    for (let i = 0; i < 5; i++) {
      await tick(db.pool, "mid2");
      await new Promise((r) => setTimeout(r, 20));
    }
    stop = true;
    await Promise.all(running);
    await tick(db.pool, "mid2");

    const visible = new Map<number, boolean>();
    const { rows } = await db.query<{ t: string; v: boolean }>(
      `select t::text, pg_visible_in_snapshot(t::text::xid8, tick_snapshot) as v
         from unnest($1::int8[]) t, pgq.tick k join pgq.queue q on q.queue_id = k.tick_queue
        where q.queue_name = 'mid2' and k.tick_id = $2`,
      [txs.map((t) => t.txid), regTick],
    );
    for (const r of rows) visible.set(Number(r.t), r.v);
    const expected = txs.filter((t) => !visible.get(t.txid)).flatMap((t) => t.ids);
    const before = txs.filter((t) => visible.get(t.txid)).flatMap((t) => t.ids);
    expect(expected.length).toBeGreaterThan(0);
    expect(before.length).toBeGreaterThan(0);

    const got = allIds(await drainAll(db.pool, "mid2", "new"));
    expect(got.length).toBe(new Set(got).size);
    expect(got.sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
    const oldGot = allIds(await drainAll(db.pool, "mid2", "old"));
    expect(oldGot.sort((a, b) => a - b)).toEqual(txs.flatMap((t) => t.ids).sort((a, b) => a - b));
  });
});

describe("register_consumer(q, c, tick) repositions", () => {
  let t2: number;
  let t3: number;
  let t4: number;
  let e1: number;
  let e2: number;
  let e3: number;

  beforeAll(async () => {
    await db.query("select pgq.create_queue('repos')");
    await db.query("select pgq.register_consumer('repos', 'c')");
    e1 = await insert(db.pool, "repos", "e1");
    t2 = await tick(db.pool, "repos");
    e2 = await insert(db.pool, "repos", "e2");
    t3 = await tick(db.pool, "repos");
    e3 = await insert(db.pool, "repos", "e3");
    t4 = await tick(db.pool, "repos");
  });

  it("an unknown tick fails with 'cannot reposition, tick not found: N' and leaves the position", async () => {
    await expect(db.query("select pgq.register_consumer('repos', 'c', 999)")).rejects.toThrow(
      "cannot reposition, tick not found: 999",
    );
    const err = await registerConsumer(db.pool, "repos", "c", 998).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgqError);
    expect((err as PgqError).kind).toBe("tick_not_found");
    expect(await lastTick(db.pool, "repos", "c")).toBe(1);
    // tick ids are per queue: a tick of another queue does not count
    await db.query("select pgq.create_queue('other')");
    for (let i = 0; i < 5; i++) await tick(db.pool, "other");
    await expect(db.query("select pgq.register_consumer('repos', 'c', 6)")).rejects.toThrow(
      "cannot reposition, tick not found: 6",
    );
    // a new consumer at an unknown tick is not created
    await expect(db.query("select pgq.register_consumer('repos', 'ghost', 999)")).rejects.toThrow("tick not found");
    expect(await num(db.pool, "select count(*) from pgq.get_consumer_info('repos', 'ghost')")).toBe(0);
  });

  it("with a batch open it fails with 'reposition while active not allowed'; the batch stays open, the same", async () => {
    const b = (await openBatch(db.pool, "repos", "c"))!;
    expect([b.prevTick, b.curTick]).toEqual([1, t2]);
    // from another connection, as a tool would
    const admin = await conns.connect("admin");
    await expect(admin.query("select pgq.register_consumer('repos', 'c', $1)", [t3])).rejects.toThrow(
      "reposition while active not allowed",
    );
    const err = await registerConsumer(admin, "repos", "c", t3).catch((e: unknown) => e);
    expect((err as PgqError).kind).toBe("batch_open");
    expect(await openBatch(db.pool, "repos", "c")).toEqual(b);
    const done = await drainOne(db.pool, "repos", "c");
    expect(done!.batchId).toBe(b.batchId);
    expect(ids(done!.events)).toEqual([e1]);
    expect(await lastTick(db.pool, "repos", "c")).toBe(t2);
  });

  it("forward: returns 0 and consumption continues after that tick (e2 skipped)", async () => {
    expect(await num(db.pool, "select pgq.register_consumer('repos', 'c', $1)", [t3])).toBe(0);
    expect(await lastTick(db.pool, "repos", "c")).toBe(t3);
    const batches = await drainAll(db.pool, "repos", "c");
    expect(batches.map((b) => [b.prevTick, b.curTick, ids(b.events)])).toEqual([[t3, t4, [e3]]]);
  });

  it("back: returns 0 and the events after that tick come again", async () => {
    expect(await registerConsumer(db.pool, "repos", "c", 1)).toBe(false);
    const batches = await drainAll(db.pool, "repos", "c");
    expect(batches.map((b) => [b.prevTick, b.curTick, ids(b.events)])).toEqual([
      [1, t2, [e1]],
      [t2, t3, [e2]],
      [t3, t4, [e3]],
    ]);
  });

  it("a new consumer registered at a tick returns 1 and starts right after it", async () => {
    expect(await num(db.pool, "select pgq.register_consumer('repos', 'late', $1)", [t2])).toBe(1);
    expect(allIds(await drainAll(db.pool, "repos", "late"))).toEqual([e2, e3]);
  });
});
