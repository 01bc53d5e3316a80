/**
 * The ticker as its own process: ticks under load (ticker_max_count,
 * ticker_max_lag), idle ticks that slow down (pgq.ticker policy), and a
 * tick notice on NATS for every tick it makes. The tests use a queue each
 * and run concurrently against one ticker process.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { installPgq, registerConsumer } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { collectNotices, connectNatsClient } from "../support/nats.ts";
import { lastTickId, queueTicks, type TickRow, snapshotOrderViolations, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { produceEvents } from "./helpers.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { MachineClock, sleep, waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let conf: string;
let prefix: string;
let ticker: ServiceProcess;
let nc: NatsConnection;

beforeAll(async () => {
  db = await createTestDatabase("ticker_ticking");
  await installPgq(db.pool);
  prefix = uniqueSubjectPrefix("ticking");
  conf = writeTickerConfig(makeTempDir("ticking"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: prefix });
  nc = await connectNatsClient(natsUrl());
  ticker = startTicker(conf, "ticker");
  await ticker.waitForLog("active: this instance ticks the database");
});

afterAll(async () => {
  await ticker?.kill("SIGKILL");
  await nc?.close();
  await db?.drop();
});

/** Creates a queue and sets its ticker settings through `pgqadm config`; returns once the ticker has ticked it. */
async function queueWithSettings(queue: string, settings: Record<string, string>): Promise<void> {
  await db.query("select pgq.create_queue($1)", [queue]);
  const r = await runPgqadm([conf, "config", queue, ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
  expect(r.code, show(r)).toBe(0);
  for (const [k, v] of Object.entries(settings)) expect(r.stdout).toContain(`${k}: ${v}`);
  // A new queue has one tick; the ticker adds the second at once.
  await waitForTickAfter(db, queue, 1);
}

const eventsIn = async (queue: string, n: number) =>
  db.query("select pgq.insert_event($1, 'load', i::text) from generate_series(1, $2) i", [queue, n]);

describe.concurrent("ticking under load", () => {
  it("ticks as soon as ticker_max_count new events arrived, not before, long before ticker_max_lag", async () => {
    const q = "load_q";
    await queueWithSettings(q, { ticker_max_count: "50", ticker_max_lag: "20 seconds", ticker_idle_period: "60 seconds" });
    await registerConsumer(db.pool, q, "reader");
    const start = await lastTickId(db, q);

    await eventsIn(q, 49);
    await sleep(1000); // ten loops of the ticker: 49 < 50 and lag < 20 s, so no tick
    expect(await lastTickId(db, q)).toBe(start);

    await eventsIn(q, 1);
    const t0 = new MachineClock(); // within 2 s of machine time (see wait.ts)
    const next = await waitForTickAfter(db, q, start, 3_000);
    expect(next).toBe(start + 1);
    expect(t0.elapsed()).toBeLessThan(2_000);

    // A burst of at least 300 events from parallel sessions: several ticks, each on the count.
    const before = await lastTickId(db, q);
    const burst = produceEvents(db.url, q, { connections: 3, holdMs: 0 });
    await sleep(1_500);
    await waitFor(() => burst.committed() >= 300, { timeoutMs: 10_000, what: "300 events in the burst" });
    const produced = await burst.stop();
    // Several ticks during the burst although max_lag is 20 s: each on the count (50 new events at least).
    const ticks = (await queueTicks(db, q)).filter((t) => t.id > before);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.eventSeq - ticks[i - 1]!.eventSeq).toBeGreaterThanOrEqual(50);

    // Every event comes in exactly one batch (force_tick makes the ticker cut the remainder).
    // Read the last tick before forcing: the ticker may tick at once, before a later read.
    const beforeForce = await lastTickId(db, q);
    await db.query("select pgq.force_tick($1)", [q]);
    const last = await waitForTickAfter(db, q, beforeForce, 3_000);
    const seen: number[] = [];
    for (;;) {
      const { rows } = await db.query<{ b: string | null }>("select pgq.next_batch($1, 'reader') as b", [q]);
      const batch = rows[0]!.b;
      if (batch === null) break;
      const ev = await db.query<{ ev_id: string }>("select ev_id from pgq.get_batch_events($1)", [batch]);
      seen.push(...ev.rows.map((r) => Number(r.ev_id)));
      await db.query("select pgq.finish_batch($1)", [batch]);
    }
    expect(seen.length).toBe(50 + produced);
    expect(new Set(seen).size).toBe(seen.length);
    expect(await lastTickId(db, q)).toBeGreaterThanOrEqual(last);
    expect(await snapshotOrderViolations(db, q)).toEqual([]);
  });

  it("with fewer than ticker_max_count new events, ticks once ticker_max_lag has passed since the last tick", async () => {
    const q = "lag_q";
    await queueWithSettings(q, { ticker_max_count: "1000", ticker_max_lag: "1 second", ticker_idle_period: "60 seconds" });
    for (let round = 0; round < 2; round++) {
      // Right after a tick (asked for with force_tick), one event: the next tick comes max_lag
      // after that tick, not at once.
      const from = await lastTickId(db, q);
      await db.query("select pgq.force_tick($1)", [q]);
      const tick = await waitForTickAfter(db, q, from, 2_000);
      await eventsIn(q, 1);
      const next = await waitForTickAfter(db, q, tick, 4_000);
      const ticks = await queueTicks(db, q);
      const a = ticks.find((t) => t.id === tick)!;
      const b = ticks.find((t) => t.id === next)!;
      expect(next).toBe(tick + 1);
      expect(b.eventSeq).toBeGreaterThan(a.eventSeq);
      const gap = b.time.getTime() - a.time.getTime();
      expect(gap).toBeGreaterThanOrEqual(990);
      expect(gap).toBeLessThan(1_900);
    }
  });
});

describe.concurrent("idle ticking", () => {
  it("after activity, idle ticks keep coming but further apart, up to ticker_idle_period", async () => {
    const q = "idle_q";
    await queueWithSettings(q, { ticker_max_count: "1000", ticker_max_lag: "0.5 seconds", ticker_idle_period: "2 seconds" });
    const load = produceEvents(db.url, q, { connections: 1, holdMs: 50 });
    await sleep(1_600);
    await load.stop();
    const quietFrom = Date.now();

    const split = (ticks: TickRow[]) => {
      // The last tick that brought new events ends the activity; the ticks after it are idle ticks.
      let lastBusy = 0;
      for (let i = 1; i < ticks.length; i++) if (ticks[i]!.eventSeq !== ticks[i - 1]!.eventSeq) lastBusy = i;
      return { busy: ticks.slice(1, lastBusy + 1), idle: ticks.slice(lastBusy) };
    };
    // Expected idle intervals: 1 s (twice the last busy one), then 2 s, 2 s (idle_period).
    const ticks = await waitFor(
      async () => {
        const all = await queueTicks(db, q);
        return split(all).idle.length >= 4 ? all : undefined;
      },
      { timeoutMs: 9_000, intervalMs: 200, what: "three idle ticks" },
    );
    const { busy, idle } = split(ticks);
    const gaps = (list: TickRow[]) => list.slice(1).map((t, i) => (t.time.getTime() - list[i]!.time.getTime()) / 1000);
    const detail = JSON.stringify({ quietFrom: new Date(quietFrom), ticks, idleGaps: gaps(idle) }, null, 1);

    // While events came in, ticks came every max_lag (0.5 s): consecutive ticks that both brought events.
    const busyGaps = busy
      .map((t, i) => ({ t, prev: i > 0 ? busy[i - 1] : undefined, prevPrev: i > 1 ? busy[i - 2] : undefined }))
      .filter(({ t, prev, prevPrev }) => prev && prevPrev && t.eventSeq !== prev.eventSeq && prev.eventSeq !== prevPrev.eventSeq)
      .map(({ t, prev }) => (t.time.getTime() - prev!.time.getTime()) / 1000);
    expect(busyGaps.length, detail).toBeGreaterThanOrEqual(2);
    for (const g of busyGaps) {
      expect(g, detail).toBeGreaterThanOrEqual(0.49);
      expect(g, detail).toBeLessThan(1.0);
    }

    // Idle: ticks still happen, each one once the time since the previous tick is twice the
    // interval before it (but at least max_lag/2), capped at idle_period (2 s): 1 s, 2 s, 2 s, ...
    // Never early (the check and tick_time both use clock_timestamp), late by at most a few loops.
    const idleGaps = gaps(idle);
    const lastBusyGap = gaps(ticks.slice(0, ticks.indexOf(idle[0]!) + 1)).at(-1)!;
    expect(idleGaps.length, detail).toBeGreaterThanOrEqual(3);
    idleGaps.forEach((gap, i) => {
      const due = Math.max(0.25, Math.min(2 * (i === 0 ? lastBusyGap : idleGaps[i - 1]!), 2));
      expect(gap, `idle gap ${i}: due after ${due} s\n${detail}`).toBeGreaterThanOrEqual(due - 0.02);
      expect(gap, `idle gap ${i}: due after ${due} s\n${detail}`).toBeLessThan(due + 0.6);
    });
    // Sparser than while busy, and up to the cap.
    expect(idleGaps[0]!, detail).toBeGreaterThan(lastBusyGap * 1.5);
    expect(idleGaps.at(-1)!, detail).toBeGreaterThanOrEqual(1.98);
    expect(await snapshotOrderViolations(db, q)).toEqual([]);
  });
});

describe.concurrent("tick notices on NATS", () => {
  it("publishes one notice per tick on <prefix>.pgq.tick.<queue>, with the tick ids that are in pgq.tick", async () => {
    const q = "notice_q";
    const odd = "orders.eu west";
    const notices = collectNotices(nc, tickNoticeSubject(prefix, q));
    const oddNotices = collectNotices(nc, `${prefix}.pgq.tick.orders_eu_west`);
    await nc.flush();
    await db.query("select pgq.create_queue($1)", [odd]);
    await queueWithSettings(q, { ticker_max_count: "20", ticker_max_lag: "0.5 seconds", ticker_idle_period: "1 second" });

    const load = produceEvents(db.url, q, { connections: 1, holdMs: 10 });
    await sleep(1_500);
    await load.stop();
    const upTo = await lastTickId(db, q);
    await notices.waitFor((n) => n.tick_id >= upTo, 3_000, `the notice of tick ${upTo}`);

    const ticks = (await queueTicks(db, q)).filter((t) => t.id >= 2 && t.id <= upTo);
    const ids = notices.notices.map((n) => n.tick_id).filter((id) => id <= upTo);
    expect(ticks.length).toBeGreaterThanOrEqual(4);
    // Tick 1 comes from create_queue; every later one is the ticker's and has its notice, in order.
    expect(ids).toEqual(ticks.map((t) => t.id));
    for (const n of notices.notices) {
      expect(n.queue).toBe(q);
      expect(n.database).toBe(db.name);
      expect(Number.isNaN(Date.parse(n.time))).toBe(false);
    }
    const times = new Map(ticks.map((t) => [t.id, t.time.getTime()]));
    for (const n of notices.notices.filter((x) => x.tick_id <= upTo)) {
      expect(Math.abs(Date.parse(n.time) - times.get(n.tick_id)!)).toBeLessThan(1_000);
    }

    // A queue name that is not a subject token is published under its reduced token, with its real name inside.
    const oddNotice = await oddNotices.waitFor((n) => n.tick_id >= 2, 3_000, "a notice for the queue with a dot and a space");
    expect(oddNotice.queue).toBe(odd);
    expect(await lastTickId(db, odd)).toBeGreaterThanOrEqual(oddNotice.tick_id);
    notices.sub.unsubscribe();
    oddNotices.sub.unsubscribe();
  });
});
