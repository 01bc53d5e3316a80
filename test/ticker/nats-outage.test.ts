/**
 * NATS is optional for ticking: with a private nats-server killed under
 * the ticker, ticks go on in Postgres; once the server is back on the same
 * port, commands are answered and tick notices flow again. A ticker started
 * while NATS is down ticks as well and serves commands once NATS appears.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { collectNotices, connectNatsClient, startNatsServer } from "../support/nats.ts";
import { freePort } from "../support/local-postgres.ts";
import { lastTickId, snapshotOrderViolations, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { produceEvents } from "./helpers.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
const Q = "outage_q";

beforeAll(async () => {
  db = await createTestDatabase("ticker_nats_outage");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.3 seconds')", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_idle_period', '1 second')", [Q]);
});

afterAll(async () => {
  await db?.drop();
});

describe("NATS outage", () => {
  it("ticks continue while nats-server is down; commands and notices resume after it is back", async () => {
    const dir = makeTempDir("nats-outage");
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const prefix = uniqueSubjectPrefix("outage");
    let nats = await startNatsServer(port, dir, "nats-server-1");
    const conf = writeTickerConfig(dir, { db: db.url, natsUrl: url, subjectPrefix: prefix });
    const ticker = startTicker(conf);
    await ticker.waitForLog("serving admin commands on NATS");

    let nc: NatsConnection | undefined;
    const load = produceEvents(db.url, Q, { connections: 1, holdMs: 20 });
    try {
      nc = await connectNatsClient(url);
      const notices = collectNotices(nc, tickNoticeSubject(prefix, Q));
      await nc.flush();
      const up = await runPgqadm([conf, "status"]);
      expect(up.code, show(up)).toBe(0);
      expect(up.stdout).toContain(Q);
      const t0 = await lastTickId(db, Q);
      await notices.waitFor((n) => n.tick_id > t0, 5_000, "a notice before the outage");

      // Outage.
      const fromLine = ticker.lines.length;
      await nats.kill("SIGKILL");
      await ticker.waitForLog("NATS disconnect", { from: fromLine, timeoutMs: 5_000 });
      const down = await runPgqadm([conf, "--timeout", "2", "status"]);
      expect(down.code, show(down)).toBe(3);
      expect(down.stderr).toContain(`cannot connect to NATS at ${url}`);

      // Ticks go on in Postgres.
      const atOutage = await lastTickId(db, Q);
      const during = await waitForTickAfter(db, Q, atOutage + 2, 5_000);
      expect(ticker.running).toBe(true);

      // Back on the same port: the ticker reconnects, answers commands, publishes notices again.
      nats = await startNatsServer(port, dir, "nats-server-2");
      await ticker.waitForLog("NATS reconnect", { from: fromLine, timeoutMs: 10_000 });
      const again = await waitFor(
        async () => {
          const r = await runPgqadm([conf, "--json", "--timeout", "2", "status"]);
          return r.code === 0 ? r : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 300, what: "pgqadm status after NATS came back" },
      );
      const status = JSON.parse(again.stdout) as { queues: Array<{ queue: string; last_tick_id: number }> };
      expect(status.queues.find((q) => q.queue === Q)!.last_tick_id).toBeGreaterThanOrEqual(during);
      const afterRestart = await lastTickId(db, Q);
      await notices.waitFor((n) => n.tick_id > afterRestart, 5_000, `a notice for a tick after ${afterRestart}`);

      expect(ticker.logs("ticker database error")).toEqual([]);
      expect(await snapshotOrderViolations(db, Q)).toEqual([]);
    } finally {
      await load.stop();
      await nc?.close().catch(() => {});
    }
  });

  it("a ticker started while NATS is down ticks anyway and serves commands once NATS is up", async () => {
    const dir = makeTempDir("nats-late");
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const conf = writeTickerConfig(dir, { db: db.url, natsUrl: url, subjectPrefix: uniqueSubjectPrefix("late") });
    const before = await lastTickId(db, Q);
    const ticker = startTicker(conf);
    await ticker.waitForLog("active: this instance ticks the database");
    await db.query("select pgq.insert_event($1, 'x', 'y')", [Q]);
    await waitForTickAfter(db, Q, before, 5_000);
    expect(ticker.logs("serving admin commands on NATS")).toEqual([]);

    const none = await runPgqadm([conf, "--timeout", "1", "ping"]);
    expect(none.code, show(none)).toBe(3);

    await startNatsServer(port, dir);
    await ticker.waitForLog("serving admin commands on NATS", { timeoutMs: 10_000 });
    const ping = await runPgqadm([conf, "--json", "ping"]);
    expect(ping.code, show(ping)).toBe(0);
    expect(JSON.parse(ping.stdout)).toMatchObject({ state: "active", instance: expect.stringMatching(new RegExp(`-${ticker.pid}$`)) });
  });
});
