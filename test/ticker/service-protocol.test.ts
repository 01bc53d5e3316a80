/**
 * What standard tooling sees of a running ticker, and how it obeys the
 * operating system: the NATS service protocol ($SRV.PING/INFO/STATS), the
 * Prometheus endpoint, SIGHUP (reload) and SIGTERM/SIGINT (stop after the
 * current unit of work, exit 0).
 */
import { writeFileSync } from "node:fs";
import { Svcm } from "@nats-io/services";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { VERSION } from "../../shared/version.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { connectNatsClient } from "../support/nats.ts";
import { freePort } from "../support/local-postgres.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { waitFor } from "../support/wait.ts";

useProcessCleanup();

const Q = "srv_q";
let db: TestDatabase;
let nc: NatsConnection;

beforeAll(async () => {
  db = await createTestDatabase("ticker_srv");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.2 seconds')", [Q]);
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await db?.drop();
});

describe("the ticker as standard tools see it", () => {
  it("answers $SRV.PING, $SRV.INFO and $SRV.STATS with its version, endpoints and tick statistics", async () => {
    const prefix = uniqueSubjectPrefix("srv");
    const job = `srvjob_${Date.now()}`;
    const conf = writeTickerConfig(makeTempDir("srv"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: prefix, jobName: job });
    const ticker = startTicker(conf);
    await ticker.waitForLog("serving admin commands on NATS");
    const lastBefore = await lastTickId(db, Q); // read first: the ticker may tick right after the insert
    await db.query("select pgq.insert_event($1, 'x', 'y')", [Q]);
    await waitForTickAfter(db, Q, lastBefore);

    const client = new Svcm(nc).client({ strategy: "timer", maxWait: 2_000 });
    const mine = <T extends { metadata?: Record<string, string> }>(items: T[]) => items.filter((i) => i.metadata?.job === job);

    const pings = mine(await collect(await client.ping("pgqadm-ticker")));
    expect(pings).toHaveLength(1);
    expect(pings[0]).toMatchObject({ name: "pgqadm-ticker", version: VERSION });

    const infos = mine(await collect(await client.info("pgqadm-ticker")));
    expect(infos).toHaveLength(1);
    const subjects = infos[0]!.endpoints.map((e) => e.subject);
    for (const command of ["status", "create", "drop", "config", "stop", "reload", "ping"]) {
      expect(subjects).toContain(`${prefix}.pgqadm.${job}.${command}`);
    }

    const stats = mine(await collect(await client.stats("pgqadm-ticker")));
    expect(stats).toHaveLength(1);
    const statusEndpoint = stats[0]!.endpoints!.find((e) => e.subject === `${prefix}.pgqadm.${job}.status`);
    expect(statusEndpoint).toBeDefined();
    const data = statusEndpoint!.data as { state: string; ticks_by_queue: Record<string, number>; last_maintenance: string | null };
    expect(data.state).toBe("active");
    expect(data.ticks_by_queue[Q]).toBeGreaterThanOrEqual(1);
    expect(data.last_maintenance).not.toBeNull();
  });

  it("serves Prometheus metrics with ticks, activity and ticker lag per queue", async () => {
    const port = await freePort();
    const conf = writeTickerConfig(makeTempDir("metrics"), {
      db: db.url,
      natsUrl: natsUrl(),
      subjectPrefix: uniqueSubjectPrefix("metrics"),
      extra: { metrics_port: port },
    });
    const ticker = startTicker(conf);
    await ticker.waitForLog("active: this instance ticks the database");
    const lastBefore = await lastTickId(db, Q); // read first: the ticker may tick right after the insert
    await db.query("select pgq.insert_event($1, 'x', 'y')", [Q]);
    await waitForTickAfter(db, Q, lastBefore);

    const body = await waitFor(
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /pgq_ticks_total\{[^}]*queue="srv_q"[^}]*\} [1-9]/.test(text) ? text : undefined;
      },
      { timeoutMs: 5_000, what: "a tick counted in /metrics" },
    );
    expect(body).toMatch(/pgq_ticker_active\{[^}]*\} 1/);
    expect(body).toMatch(/pgq_queue_ticker_lag_seconds\{[^}]*queue="srv_q"[^}]*\} \d/);
    expect(body).toMatch(/service="ticker"/);
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
  });
});

describe("signals", () => {
  it("SIGHUP re-reads the config; a broken file is refused and the old config kept", async () => {
    const dir = makeTempDir("sighup");
    const options = { db: db.url, natsUrl: natsUrl(), subjectPrefix: uniqueSubjectPrefix("sighup") };
    const conf = writeTickerConfig(dir, options);
    const ticker = startTicker(conf);
    await ticker.waitForLog("active: this instance ticks the database");

    let from = ticker.lines.length;
    ticker.child.kill("SIGHUP");
    await ticker.waitForLog("config reloaded", { from });

    writeFileSync(conf, "[pgqadm]\ndb = dbname=x\nloop_delay = soon\n");
    from = ticker.lines.length;
    ticker.child.kill("SIGHUP");
    const failed = await ticker.waitForLog("config reload failed; keeping the old config", { from });
    expect(JSON.stringify(failed)).toContain("loop_delay");
    expect(ticker.running).toBe(true);

    // Still ticking with the old config.
    const lastBefore = await lastTickId(db, Q); // read first: the ticker may tick right after the insert
    await db.query("select pgq.insert_event($1, 'x', 'y')", [Q]);
    await waitForTickAfter(db, Q, lastBefore);
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} stops the ticker cleanly with exit code 0`, async () => {
      const conf = writeTickerConfig(makeTempDir(signal.toLowerCase()), {
        db: db.url,
        natsUrl: natsUrl(),
        subjectPrefix: uniqueSubjectPrefix(signal.toLowerCase()),
      });
      const ticker = startTicker(conf);
      await ticker.waitForLog("active: this instance ticks the database");
      const exit = await ticker.kill(signal);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(ticker.logs("ticker stopped")).toHaveLength(1);
      // Its lock is released: nothing holds the ticker lock any more.
      const { rows } = await db.query(
        "select 1 from pg_locks where locktype = 'advisory' and classid = 1886482802 and database = (select oid from pg_database where datname = current_database())",
      );
      expect(rows).toEqual([]);
    });
  }
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
