/**
 * Queues created and dropped (over NATS, as pgqadm does) while a fast
 * ticker ticks and maintains them: a queue vanishing between the ticker
 * listing it and ticking or rotating it is not a database failure, so the
 * ticker neither logs one nor drops its connection (and its lock).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { connectNatsClient, rawRequest } from "../support/nats.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { MachineClock, sleep, waitFor } from "../support/wait.ts";
import { startTicker, writeTickerConfig } from "../support/pgqadm.ts";

useProcessCleanup();

let db: TestDatabase;
let nc: NatsConnection;

beforeAll(async () => {
  db = await createTestDatabase("ticker_churn");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue('steady')");
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await db?.drop();
});

interface Reply {
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

describe("queue churn under a running ticker", () => {
  it("creating and dropping queues while it ticks and rotates never makes the ticker reconnect", async () => {
    const prefix = uniqueSubjectPrefix("churn");
    const conf = writeTickerConfig(makeTempDir("churn"), {
      db: db.url,
      natsUrl: natsUrl(),
      subjectPrefix: prefix,
      jobName: "churn",
      extra: { loop_delay: 0.01, maint_delay: 1 },
    });
    const ticker = startTicker(conf);
    await ticker.waitForLog("serving admin commands on NATS");
    await ticker.waitForLog("active: this instance ticks the database");
    const send = (command: string, body: unknown) => rawRequest(nc, `${prefix}.pgqadm.churn.${command}`, JSON.stringify(body)) as Promise<Reply>;

    const churn = new MachineClock();
    let pairs = 0;
    const enough = () => churn.elapsed() >= 4_000 && pairs >= 20 && ticker.logs("maintenance done").length >= 3;
    // At least 4 s of churn (machine time, see wait.ts), 20 queues and 3 maintenance runs; at most 2000 queues.
    for (let i = 0; !enough() && pairs < 2000; i++) {
      const queue = `churn_${i}`;
      expect(await send("create", { queue })).toEqual({ result: { queue, created: true } });
      // After the new queue's immediate second tick, drop it while the ticker keeps looking at
      // it every 10 ms (drop_queue takes the ticker lock first, so the two never deadlock).
      await waitFor(async () => (await lastTickId(db, queue)) >= 2, { timeoutMs: 10_000, intervalMs: 5, what: `the second tick of ${queue}` });
      await sleep(i % 5);
      const dropped = await send("drop", { queue });
      expect(dropped).toEqual({ result: { queue, dropped: true } });
      pairs++;
    }
    expect((await db.query("select queue_name from pgq.queue")).rows).toEqual([{ queue_name: "steady" }]);

    expect(ticker.logs("ticker database error")).toEqual([]);
    expect(ticker.logs("active: this instance ticks the database")).toHaveLength(1);
    expect(ticker.logs("maintenance done").length).toBeGreaterThanOrEqual(3);
    expect(ticker.logs("tick failed for this queue")).toEqual([]);

    // And it still ticks.
    const last = await lastTickId(db, "steady");
    await db.query("select pgq.insert_event('steady', 'x', 'y')");
    await db.query("select pgq.force_tick('steady')");
    await waitForTickAfter(db, "steady", last);
    expect(ticker.running).toBe(true);
  });
});
