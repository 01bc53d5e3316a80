/**
 * Independent consumers and the rotation guard
 * (docs/pgq-rotation-and-txids.md, "The rotation guard"), rotation period 0:
 *   (a) two consumers keep independent positions; rotation waits for the
 *       slower one;
 *   (b) the rotation guard: a lagging consumer makes step1 return 0 and
 *       nothing is truncated, switched or deleted; once it catches up the
 *       rotation happens; a consumer on the very first tick also blocks
 *       rotation and keeps its tick. Followed through a full cycle of the
 *       three slot tables, so a table that holds events is truncated only
 *       after every consumer has read them.
 *
 * Transaction ids are cluster-wide and other test files run at the same
 * time, so before a tick that must have its xmin above the last switch the
 * tests wait for older transactions to end (waitForOlderTransactions).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getConsumerInfo, installPgq, rotateStep1, rotateStep2 } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import {
  allIds,
  drainAll,
  drainOne,
  ids,
  lastTick,
  num,
  queueId,
  switchStep2,
  tick,
  value,
  waitForOlderTransactions,
} from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-rotation");
  await installPgq(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

const insert = async (queue: string, type: string) => (await num(db.pool, "select pgq.insert_event($1, $2, 'x')", [queue, type]))!;

/** Ticks with nothing older than the queue's last switch still running: the tick's xmin is above step2. */
async function tickAfterSwitch(queue: string): Promise<number> {
  await waitForOlderTransactions(db.pool, (await switchStep2(db.pool, queue))!);
  return tick(db.pool, queue);
}

/** Everything rotation could change: slot, switch columns, row counts per slot table, tick ids. */
async function queueState(queue: string) {
  const qid = await queueId(db.pool, queue);
  const { rows } = await db.query(
    `select queue_cur_table, queue_switch_step1::text, queue_switch_step2::text, queue_switch_time,
            (select count(*) from pgq.event_${qid}_0)::int as t0,
            (select count(*) from pgq.event_${qid}_1)::int as t1,
            (select count(*) from pgq.event_${qid}_2)::int as t2,
            array(select tick_id::int from pgq.tick where tick_queue = $1 order by tick_id) as ticks
       from pgq.queue where queue_id = $1`,
    [qid],
  );
  return rows[0] as {
    queue_cur_table: number;
    queue_switch_step1: string;
    queue_switch_step2: string | null;
    queue_switch_time: Date;
    t0: number;
    t1: number;
    t2: number;
    ticks: number[];
  };
}

/** Step 1 then step 2, each in its own transaction; true when the queue rotated. */
async function rotate(queue: string): Promise<boolean> {
  const rotated = await rotateStep1(db.pool, queue);
  if (rotated) expect(await rotateStep2(db.pool)).toBeGreaterThanOrEqual(1);
  return rotated;
}

describe("two consumers are independent; rotation waits for the slower one", () => {
  it("positions move independently, each consumer gets every event once", async () => {
    await db.query("select pgq.create_queue('two')");
    await db.query("select pgq.register_consumer('two', 'fast')");
    await db.query("select pgq.register_consumer('two', 'slow')");
    const evs: number[] = [];
    const ticks: number[] = [];
    for (let i = 0; i < 3; i++) {
      evs.push(await insert("two", `e${i}`));
      ticks.push(await tickAfterSwitch("two"));
    }
    const fast = await drainAll(db.pool, "two", "fast");
    expect(fast.map((b) => ids(b.events))).toEqual(evs.map((e) => [e]));
    expect(await lastTick(db.pool, "two", "fast")).toBe(ticks[2]);
    expect(await lastTick(db.pool, "two", "slow")).toBe(1);

    const one = await drainOne(db.pool, "two", "slow");
    expect(ids(one!.events)).toEqual([evs[0]]);
    const info = await getConsumerInfo(db.pool, "two");
    expect(info.map((c) => [c.consumerName, c.lastTick])).toEqual([
      ["fast", ticks[2]],
      ["slow", ticks[0]],
    ]);
    expect(await drainOne(db.pool, "two", "fast")).toBeNull();
    expect(allIds(await drainAll(db.pool, "two", "slow"))).toEqual([evs[1], evs[2]]);
  });

  it("after a switch, rotation waits until the slower consumer has passed it", async () => {
    await db.query("select pgq.set_queue_config('two', 'rotation_period', '0')");
    expect(await rotate("two")).toBe(true); // both consumers are past the creation switch

    const e = await insert("two", "after-switch");
    await tickAfterSwitch("two");
    expect(allIds(await drainAll(db.pool, "two", "fast"))).toEqual([e]);
    const before = await queueState("two");
    expect(await rotateStep1(db.pool, "two")).toBe(false);
    expect(await queueState("two")).toEqual(before);

    expect(allIds(await drainAll(db.pool, "two", "slow"))).toEqual([e]);
    expect(await rotate("two")).toBe(true);
    expect((await queueState("two")).queue_cur_table).toBe(2);
  });
});

describe("the rotation guard", () => {
  it("a consumer on the very first tick blocks rotation and keeps its tick", async () => {
    await db.query("select pgq.create_queue('first')");
    await db.query("select pgq.register_consumer('first', 'sitter')");
    await db.query("select pgq.register_consumer('first', 'mover')");
    const e = await insert("first", "e");
    await tickAfterSwitch("first");
    expect(allIds(await drainAll(db.pool, "first", "mover"))).toEqual([e]);
    await db.query("select pgq.set_queue_config('first', 'rotation_period', '0')");

    const before = await queueState("first");
    expect(await rotateStep1(db.pool, "first")).toBe(false);
    expect(await rotateStep1(db.pool, "first")).toBe(false);
    expect(await queueState("first")).toEqual(before);
    expect(before.ticks).toContain(1);
    expect(await lastTick(db.pool, "first", "sitter")).toBe(1);

    // the sitter still reads from tick 1, nothing lost
    const b = await drainOne(db.pool, "first", "sitter");
    expect([b!.prevTick, ids(b!.events)]).toEqual([1, [e]]);
    expect(await rotate("first")).toBe(true);
  });

  it("a lagging consumer holds rotation back with nothing truncated; a full table cycle loses nothing", async () => {
    await db.query("select pgq.create_queue('guard')");
    await db.query("select pgq.register_consumer('guard', 'lead')");
    await db.query("select pgq.register_consumer('guard', 'lag')");
    await db.query("select pgq.set_queue_config('guard', 'rotation_period', '0')");
    const qid = await queueId(db.pool, "guard");
    const got = { lead: [] as number[], lag: [] as number[] };
    const drain = async (c: "lead" | "lag") => {
      const evs = allIds(await drainAll(db.pool, "guard", c));
      got[c].push(...evs);
      return evs;
    };

    // both past the creation switch; e0b read by lead only
    const e0a = await insert("guard", "e0a");
    await tickAfterSwitch("guard");
    await drain("lead");
    await drain("lag");
    const e0b = await insert("guard", "e0b");
    await tickAfterSwitch("guard");
    expect(await drain("lead")).toEqual([e0b]);

    // R1: allowed (lag's position is above the creation switch); cur 0 -> 1
    expect(await rotate("guard")).toBe(true);
    const e1a = await insert("guard", "e1a");
    await tickAfterSwitch("guard");
    expect(await drain("lead")).toEqual([e1a]);

    // lag sits below the switch: step1 does nothing at all, however often it runs
    const held = await queueState("guard");
    expect([held.queue_cur_table, held.t0, held.t1, held.t2]).toEqual([1, 2, 1, 0]);
    for (let i = 0; i < 3; i++) expect(await rotateStep1(db.pool, "guard")).toBe(false);
    expect(await queueState("guard")).toEqual(held);

    // one batch later lag is still on a tick from before the switch
    const lagOne = await drainOne(db.pool, "guard", "lag");
    got.lag.push(...ids(lagOne!.events));
    expect(ids(lagOne!.events)).toEqual([e0b]);
    expect(await rotateStep1(db.pool, "guard")).toBe(false);
    expect((await queueState("guard")).queue_cur_table).toBe(1);
    // the lagging consumer's tick was never deleted
    expect(held.ticks).toContain(await lastTick(db.pool, "guard", "lag"));

    // caught up (the batch reads the old and the new table): R2, cur 1 -> 2, table 2 (empty) truncated
    expect(await drain("lag")).toEqual([e1a]);
    expect(await rotate("guard")).toBe(true);
    let s = await queueState("guard");
    expect([s.queue_cur_table, s.t0, s.t1, s.t2]).toEqual([2, 2, 1, 0]);

    // R3 would truncate table 0, which still holds e0a/e0b: held back while lag lags
    const e2a = await insert("guard", "e2a");
    await tickAfterSwitch("guard");
    expect(await drain("lead")).toEqual([e2a]);
    const held2 = await queueState("guard");
    expect(await rotateStep1(db.pool, "guard")).toBe(false);
    expect(await queueState("guard")).toEqual(held2);
    expect(held2.t0).toBe(2);

    expect(await drain("lag")).toEqual([e2a]);
    expect(await rotate("guard")).toBe(true);
    s = await queueState("guard");
    expect([s.queue_cur_table, s.t0, s.t1, s.t2]).toEqual([0, 0, 1, 1]);
    // ticks from before the previous switch are gone, the consumers' positions are not
    for (const c of ["lead", "lag"]) expect(s.ticks).toContain(await lastTick(db.pool, "guard", c));
    expect(s.ticks).not.toContain(1);

    // a batch across this switch reads tables 2 and 0
    const e0c = await insert("guard", "e0c");
    await tick(db.pool, "guard");
    const b = (await num(db.pool, "select pgq.next_batch('guard', 'lead')"))!;
    const { rows } = await db.query<{ t: string }>("select t from pgq.batch_event_tables($1) t", [b]);
    expect(rows.map((r) => r.t)).toEqual([`pgq.event_${qid}_2`, `pgq.event_${qid}_0`]);
    await db.query("select pgq.finish_batch($1)", [b]);
    got.lead.push(e0c);
    await drain("lag");

    for (const c of ["lead", "lag"] as const) {
      expect(got[c]).toEqual([e0a, e0b, e1a, e2a, e0c]);
    }
    expect(await value(db.pool, "select count(*)::int from pgq.event_template where ev_queue = $1", [qid])).toBe(3);
  });
});
