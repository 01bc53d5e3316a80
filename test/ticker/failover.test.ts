/**
 * Two ticker processes on one database: one is active, the other stands
 * by; `kill -9` of the active one makes the standby take over within 5 s,
 * and the tick history never has a snapshot going backwards.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { connectNatsClient, requestAll } from "../support/nats.ts";
import { lastTickId, queueTicks, snapshotOrderViolations, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { produceEvents } from "./helpers.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { MachineClock, sleep, waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let conf: string;
let prefix: string;
let nc: NatsConnection;
const JOB = "failover";
const Q = "failover_q";

beforeAll(async () => {
  db = await createTestDatabase("ticker_failover");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_count', '30')", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.5 seconds')", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_idle_period', '1 second')", [Q]);
  prefix = uniqueSubjectPrefix("failover");
  conf = writeTickerConfig(makeTempDir("failover"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: prefix, jobName: JOB });
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await db?.drop();
});

interface Ping {
  result?: { instance: string; state: string; version: string };
  error?: unknown;
}

/** Every instance answers ping; returns instance → state. */
async function pingAll(): Promise<Map<string, string>> {
  const replies = (await requestAll(nc, `${prefix}.pgqadm.${JOB}.ping`, "{}", 800)) as Ping[];
  return new Map(replies.map((r) => [r.result!.instance, r.result!.state]));
}

const advisoryHolders = async () =>
  Number(
    (
      await db.query<{ n: string }>(
        "select count(*) as n from pg_locks where locktype = 'advisory' and classid = 1886482802 and objid = 0 and granted and database = (select oid from pg_database where datname = current_database())",
      )
    ).rows[0]!.n,
  );

describe("two tickers on one database", () => {
  it("one is active, the other stands by; kill -9 of the active one → the standby ticks within 5 s; snapshots never go backwards", async () => {
    const a = startTicker(conf, "ticker-a");
    await a.waitForLog("active: this instance ticks the database");
    const b = startTicker(conf, "ticker-b");
    await b.waitForLog("standing by: another ticker is active on this database");
    await b.waitForLog("serving admin commands on NATS");
    await a.waitForLog("serving admin commands on NATS");

    const load = produceEvents(db.url, Q, { connections: 3, holdMs: 30 });
    try {
      // Both answer ping (every instance does), in their own states; one holds the ticker lock.
      const states = await waitFor(
        async () => {
          const s = await pingAll();
          return s.size === 2 ? s : undefined;
        },
        { timeoutMs: 5_000, what: "ping replies from both instances" },
      );
      const instanceA = [...states.keys()].find((i) => i.endsWith(`-${a.pid}`))!;
      const instanceB = [...states.keys()].find((i) => i.endsWith(`-${b.pid}`))!;
      expect(states.get(instanceA)).toBe("active");
      expect(states.get(instanceB)).toBe("standby");
      expect(await advisoryHolders()).toBe(1);

      // Ticks go on while B waits, and B never becomes active.
      const before = await lastTickId(db, Q);
      await waitForTickAfter(db, Q, before + 2, 5_000);
      expect(b.logs("active: this instance ticks the database")).toEqual([]);
      expect(a.logs("standing by")).toEqual([]);

      // `pgqadm ping` (one reply) names a live instance.
      const ping = await runPgqadm([conf, "--json", "ping"]);
      expect(ping.code, show(ping)).toBe(0);
      expect([instanceA, instanceB]).toContain(JSON.parse(ping.stdout).instance);

      // kill -9 the active one: B takes over and a tick appears within 5 s (machine time, see wait.ts).
      await sleep(300);
      const lastBeforeKill = await lastTickId(db, Q);
      const fromLine = b.lines.length;
      await a.kill("SIGKILL");
      const sinceKill = new MachineClock();
      await b.waitForLog("active: this instance ticks the database", { from: fromLine, timeoutMs: 5_000 });
      const newTick = await waitForTickAfter(db, Q, lastBeforeKill, 5_000);
      expect(sinceKill.elapsed()).toBeLessThan(5_000);
      expect(newTick).toBeGreaterThan(lastBeforeKill);
      expect((await pingAll()).get(instanceB)).toBe("active");
      expect(await advisoryHolders()).toBe(1);

      // B keeps ticking under load.
      await waitForTickAfter(db, Q, newTick + 2, 5_000);

      // A restarted ticker now stands by behind B.
      const c = startTicker(conf, "ticker-c");
      await c.waitForLog("standing by: another ticker is active on this database");
      await sleep(500);
      expect(c.logs("active: this instance ticks the database")).toEqual([]);
    } finally {
      await load.stop();
    }

    const ticks = await queueTicks(db, Q);
    expect(ticks.length).toBeGreaterThan(8);
    // Tick ids have no duplicates and the snapshots of consecutive ticks never go backwards.
    expect(new Set(ticks.map((t) => t.id)).size).toBe(ticks.length);
    expect(await snapshotOrderViolations(db, Q)).toEqual([]);
    // Snapshots did move: there was concurrent work in progress at some ticks.
    expect(ticks.some((t) => !t.snapshot.endsWith(":"))).toBe(true);
  });

  it("a standby whose active ticker stops cleanly (pgqadm stop INSTANCE) takes over too", async () => {
    const a = startTicker(conf, "ticker-a2");
    await a.waitForLog("active: this instance ticks the database");
    await a.waitForLog("serving admin commands on NATS");
    const b = startTicker(conf, "ticker-b2");
    await b.waitForLog("standing by");
    await b.waitForLog("serving admin commands on NATS");
    const states = await pingAll();
    const instanceA = [...states.keys()].find((i) => i.endsWith(`-${a.pid}`))!;
    expect(states.get(instanceA)).toBe("active");

    const stop = await runPgqadm([conf, "--json", "stop", instanceA]);
    expect(stop.code, show(stop)).toBe(0);
    expect(JSON.parse(stop.stdout)).toEqual({ instance: instanceA, stopping: true });
    expect((await a.waitForExit(10_000)).code).toBe(0);
    expect(b.running).toBe(true);

    const before = await lastTickId(db, Q);
    await b.waitForLog("active: this instance ticks the database", { timeoutMs: 5_000 });
    await db.query("select pgq.insert_event($1, 'after', 'stop')", [Q]);
    await waitForTickAfter(db, Q, before, 5_000);
    expect(await snapshotOrderViolations(db, Q)).toEqual([]);
  });
});
