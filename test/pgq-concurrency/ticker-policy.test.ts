/**
 * The ticker policy (docs/differences-from-skytools.md, "When a tick is
 * due: `pgq.tick_if_due(queue)`") under a simulated clock. The tick
 * decision is in pgq.tick_if_due(q), which the ticker service calls (PgQ 3
 * policy, see the header of sql/pgq/functions/pgq.ticker.sql):
 *   * new events: tick once max_count arrived or max_lag passed;
 *   * idle: tick once max_lag/2 passed and the time since the last tick is
 *     twice the previous interval or idle_period (so idle ticks slow down
 *     by doubling until one per idle_period);
 *   * a queue with a single tick is always ticked.
 *
 * The clock: the test keeps a virtual time for every tick of the queue and,
 * before each check, rewrites tick_time so that each tick lies exactly
 * (virtual now - its virtual time) in the past. A ticker check therefore
 * sees virtual lags (plus the few real milliseconds between the rewrite and
 * the call, which only matter at exact boundaries, where both sides tick).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { num, queueId } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-concurrency-ticker-policy");
  await installPgq(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

const MAX_LAG = 4;
const IDLE = 60;
const MAX_COUNT = 50;

class SimulatedTicker {
  readonly vt = new Map<number, number>(); // tick id -> virtual time (s)
  readonly ticks: Array<{ id: number; at: number }> = [];
  now = 0;
  private qid = 0;

  constructor(readonly queue: string) {}

  async init(): Promise<void> {
    this.qid = await queueId(db.pool, this.queue);
    const { rows } = await db.query<{ tick_id: string }>("select tick_id from pgq.tick where tick_queue = $1", [this.qid]);
    for (const r of rows) this.vt.set(Number(r.tick_id), this.now);
  }

  /** One ticker check at the current virtual time; returns the new tick id or null. */
  async check(): Promise<number | null> {
    const entries = [...this.vt];
    await db.query(
      `update pgq.tick t
          set tick_time = now() - make_interval(secs => $2 - v.at)
         from unnest($3::int8[], $4::float8[]) as v(id, at)
        where t.tick_queue = $1 and t.tick_id = v.id`,
      [this.qid, this.now, entries.map(([id]) => id), entries.map(([, at]) => at)],
    );
    const id = await num(db.pool, "select pgq.tick_if_due($1)", [this.queue]);
    if (id !== null) {
      this.vt.set(id, this.now);
      this.ticks.push({ id, at: this.now });
    }
    return id;
  }

  /** Runs a check every virtual second from now to `until` (inclusive); `at` runs before the check of its second. */
  async runUntil(until: number, at: Record<number, () => Promise<unknown>> = {}): Promise<void> {
    for (; this.now <= until; this.now++) {
      await at[this.now]?.();
      await this.check();
    }
  }

  times(from = -Infinity): number[] {
    return this.ticks.filter((t) => t.at >= from).map((t) => t.at);
  }
}

const insertEvents = (queue: string, n: number) =>
  db.query("select pgq.insert_event($1, 'x', g::text) from generate_series(1, $2) g", [queue, n]);

describe("ticker policy under a simulated clock", () => {
  it("idle ticks slow down by doubling to one per idle_period; events tick at max_count or after max_lag", async () => {
    await db.query("select pgq.create_queue('pol')");
    for (const [k, v] of [
      ["ticker_max_lag", `${MAX_LAG} seconds`],
      ["ticker_idle_period", `${IDLE} seconds`],
      ["ticker_max_count", String(MAX_COUNT)],
    ]) {
      await db.query("select pgq.set_queue_config('pol', $1, $2)", [k, v]);
    }
    const sim = new SimulatedTicker("pol");
    await sim.init();

    await sim.runUntil(189, {});
    // t=0: a queue with a single tick ticks at once. Idle: first interval max_lag/2, then doubling, capped at idle_period.
    expect(sim.times()).toEqual([0, 2, 6, 14, 30, 62, 122, 182]);

    await sim.runUntil(380, {
      // one event after a long idle time: max_lag passed long ago, tick at the next check
      190: () => insertEvents("pol", 1),
      // one event right after a tick: tick once max_lag has passed
      191: () => insertEvents("pol", 1),
      // max_count events: tick at the next check
      195: () => insertEvents("pol", MAX_COUNT),
      // one short of max_count: tick once max_lag has passed
      196: () => insertEvents("pol", MAX_COUNT - 1),
    });
    expect(sim.times(183)).toEqual([190, 194, 195, 199, 207, 223, 255, 315, 375]);
  });

  it("events from rolled-back transactions count too (the event sequence moved); force_tick makes the next check tick", async () => {
    await db.query("select pgq.create_queue('pol2')");
    await db.query("select pgq.set_queue_config('pol2', 'ticker_max_lag', $1)", [`${MAX_LAG} seconds`]);
    await db.query("select pgq.set_queue_config('pol2', 'ticker_idle_period', $1)", [`${IDLE} seconds`]);
    await db.query("select pgq.set_queue_config('pol2', 'ticker_max_count', $1)", [String(MAX_COUNT)]);
    const sim = new SimulatedTicker("pol2");
    await sim.init();
    await sim.runUntil(1);
    expect(sim.times()).toEqual([0]);

    await sim.runUntil(3, {
      2: async () => {
        const c = await db.pool.connect();
        try {
          await c.query("begin");
          await c.query("select pgq.insert_event('pol2', 'x', g::text) from generate_series(1, $1) g", [MAX_COUNT]);
          await c.query("rollback");
        } finally {
          c.release();
        }
      },
    });
    expect(sim.times()).toEqual([0, 2]);

    // idle, 1 s after a tick: nothing due, until force_tick
    await sim.runUntil(4);
    expect(sim.times()).toEqual([0, 2]);
    await sim.runUntil(5, { 5: () => db.query("select pgq.force_tick('pol2')") });
    expect(sim.times()).toEqual([0, 2, 5]);
  });

  it("a paused queue does not tick, even when forced; unpaused it ticks again", async () => {
    await db.query("select pgq.create_queue('pol3')");
    const sim = new SimulatedTicker("pol3");
    await sim.init();
    await sim.runUntil(0);
    expect(sim.times()).toEqual([0]);
    await db.query("select pgq.set_queue_config('pol3', 'ticker_paused', 'true')");
    await insertEvents("pol3", 1000);
    await db.query("select pgq.force_tick('pol3')");
    await sim.runUntil(200);
    expect(sim.times()).toEqual([0]);
    expect(await num(db.pool, "select pgq.tick_if_due()")).toBe(0);
    // even pgq.ticker, which ticks whenever called, leaves a paused queue alone
    expect(await num(db.pool, "select pgq.ticker('pol3')")).toBeNull();
    await db.query("select pgq.set_queue_config('pol3', 'ticker_paused', 'false')");
    await sim.runUntil(201);
    expect(sim.times()).toEqual([0, 201]);
  });
});
