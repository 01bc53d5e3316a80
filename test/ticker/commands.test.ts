/**
 * The pgqadm queue and ticker commands against a live ticker process, each
 * run as a separate process, in human form and with --json: exit 0 with
 * the result, exit 1 with the service's error reply. The ticker is started
 * through the npm bin (what `npx pgqadm CONFIG ticker` runs) on an empty
 * database; the file ends with `pgqadm stop`. The batch and consumer
 * position commands are in commands-events.test.ts.
 */
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { expectFailed, expectJsonError, expectOk, pgqadmJson, runPgqadm, show, writeTickerConfig } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, useProcessCleanup } from "../support/processes.ts";

useProcessCleanup();

let db: TestDatabase;
/** Config the command line uses. */
let conf: string;
/** The ticker's own copy of the same config (so a reload can be shown a broken file). */
let tickerConf: string;
let ticker: ServiceProcess;

beforeAll(async () => {
  db = await createTestDatabase("ticker_commands");
  const dir = makeTempDir("commands");
  conf = writeTickerConfig(dir, { db: db.url, natsUrl: natsUrl(), subjectPrefix: uniqueSubjectPrefix("commands"), jobName: "cmdjob" });
  tickerConf = join(dir, "ticker.ini");
  copyFileSync(conf, tickerConf);
  ticker = new ServiceProcess("ticker (npm bin)", join(REPO_ROOT, "node_modules/.bin/pgqadm"), [tickerConf, "ticker"]);
  await ticker.waitForLog("serving admin commands on NATS");
});

afterAll(async () => {
  await ticker?.kill("SIGKILL");
  await db?.drop();
});

const cli = (...words: string[]) => runPgqadm([conf, ...words]);
const json = <T = Record<string, unknown>>(...words: string[]) => pgqadmJson<T>(conf, ...words);

const consumersOf = async (queue: string) =>
  (
    await db.query<{ co_name: string }>(
      `select c.co_name from pgq.subscription s
         join pgq.queue q on q.queue_id = s.sub_queue join pgq.consumer c on c.co_id = s.sub_consumer
        where q.queue_name = $1 order by c.co_name`,
      [queue],
    )
  ).rows.map((r) => r.co_name);

const queueNames = async () => (await db.query<{ queue_name: string }>("select queue_name from pgq.queue order by queue_id")).rows.map((r) => r.queue_name);

describe("pgqadm commands against a live ticker", () => {
  it("install: installs PgQ (human), and again is a no-op (--json)", async () => {
    const out = expectOk(await cli("install"));
    expect(out).toMatch(/^postgres_version: \d+/m);
    expect(out).toMatch(/^pgq_version: \d+\.\d+/m);
    const again = await json<{ postgres_version: string; pgq_version: string }>("install");
    expect(again.pgq_version).toMatch(/^\d+\.\d+/);
    expect((await db.query("select 1 from pg_namespace where nspname = 'pgq'")).rowCount).toBe(1);
  });

  it("create: makes a queue, which the ticker then ticks; creating it again says created: false", async () => {
    expect(expectOk(await cli("create", "orders"))).toBe("queue: orders\ncreated: true\n");
    const [again, spare] = await Promise.all([json("create", "orders"), json("create", "spare")]);
    expect(again).toEqual({ queue: "orders", created: false });
    expect(spare).toEqual({ queue: "spare", created: true });
    expect(await queueNames()).toEqual(["orders", "spare"]);
    await waitForTickAfter(db, "orders", 1, 10_000);
  });

  it("register: registers consumers; again says registered: false; on a missing queue → exit 1 not_found", async () => {
    const [human, c2] = await Promise.all([cli("register", "orders", "c1"), json("register", "orders", "c2")]);
    expect(expectOk(human)).toBe("queue: orders\nconsumer: c1\nregistered: true\n");
    expect(c2).toEqual({ queue: "orders", consumer: "c2", registered: true });
    await db.query("select pgq.register_consumer('orders', 'c3')");
    const [again, missing] = await Promise.all([json("register", "orders", "c2"), cli("register", "nosuch", "c1")]);
    expect(again).toEqual({ queue: "orders", consumer: "c2", registered: false });
    expect(expectFailed(missing, "register", "not_found")).toMatch(/queue/i);
    expect(await consumersOf("orders")).toEqual(["c1", "c2", "c3"]);
  });

  it("status (and `npx pgqadm CONFIG status`): versions, the queues with their ticker settings, each queue's consumers", async () => {
    const [human, asJson, viaNpx] = await Promise.all([
      cli("status"),
      cli("--json", "status"),
      runPgqadm([conf, "status"], { command: ["npx", "--no-install", "pgqadm"], timeoutMs: 60_000 }),
    ]);
    const out = expectOk(human);
    expect(out).toMatch(/^Postgres version: \S+.*PgQ version: \d/);
    expect(out).toMatch(/^Event queue\s+Rotation\s+Ticker\s+TLag/m);
    expect(out).toMatch(/^orders\s+3\/2h00m\s+500\/3\.0s\/1m00s\s/m);
    expect(out).toMatch(/^spare\s/m);
    expect(out).toMatch(/^orders:\n\s+Consumer\s+Lag\s+LastSeen.*\n\s+c1\s.*\n\s+c2\s.*\n\s+c3\s/m);
    expect(out).not.toMatch(/^spare:/m);
    expect(expectOk(viaNpx)).toMatch(/^orders:\n/m);

    const status = JSON.parse(expectOk(asJson)) as {
      pgq_version: string;
      queues: Array<Record<string, unknown>>;
      consumers: Array<Record<string, unknown>>;
    };
    expect(status.queues.map((q) => q.queue)).toEqual(["orders", "spare"]);
    expect(status.queues[0]).toMatchObject({ queue: "orders", ticker_max_count: 500, ticker_max_lag_s: 3, ticker_paused: false });
    expect(status.queues[0]!.last_tick_id).toBeGreaterThanOrEqual(2);
    expect(status.queues[0]!.last_tick_id).toBeLessThanOrEqual(await lastTickId(db, "orders"));
    expect(status.consumers.map((c) => [c.queue, c.consumer])).toEqual([
      ["orders", "c1"],
      ["orders", "c2"],
      ["orders", "c3"],
    ]);
  });

  it("config: shows settings, sets several at once (with or without the queue_ prefix), rejects unknown keys and bad values", async () => {
    const shown = expectOk(await cli("config", "orders"));
    expect(shown).toContain("ticker_max_count: 500\n");
    expect(shown).toContain("ticker_max_lag: 3 seconds\n");

    const set = expectOk(await cli("config", "orders", "ticker_max_count=50", "queue_ticker_max_lag=2", "ticker_idle_period=30"));
    expect(set).toContain("ticker_max_count: 50\n");
    expect(set).toContain("ticker_max_lag: 2 seconds\n");
    expect(set).toContain("ticker_idle_period: 30 seconds\n");
    const row = async () =>
      (await db.query("select queue_ticker_max_count as n, extract(epoch from queue_ticker_max_lag)::int as lag from pgq.queue where queue_name = 'orders'"))
        .rows[0];
    expect(await row()).toEqual({ n: 50, lag: 2 });

    const [shownJson, unknown, unknownJson, badMix, noQueue] = await Promise.all([
      json("config", "orders"),
      cli("config", "orders", "bogus=1"),
      cli("--json", "config", "orders", "bogus=1"),
      // A bad value rolls back every setting of the same call.
      cli("config", "orders", "ticker_max_count=70", "ticker_max_lag=soon"),
      cli("config", "nosuch"),
    ]);
    expect(shownJson).toMatchObject({ queue: "orders", ticker_max_count: 50, ticker_max_lag: "2 seconds", ticker_idle_period: "30 seconds" });
    expect(expectFailed(unknown, "config", "bad_request")).toBe(
      "unknown queue setting: bogus (known: ticker_max_count, ticker_max_lag, ticker_idle_period, rotation_period, ticker_paused, external_ticker)",
    );
    expect(expectJsonError(unknownJson, "bad_request")).toContain("unknown queue setting: bogus");
    expect(expectFailed(badMix, "config", "bad_request")).toContain('invalid input syntax for type interval: "soon"');
    expectFailed(noQueue, "config", "not_found");
    expect(await row()).toEqual({ n: 50, lag: 2 });
  });

  it("unregister: removes consumers; an unknown one → exit 1 not_found", async () => {
    const [human, asJson] = await Promise.all([cli("unregister", "orders", "c2"), json("unregister", "orders", "c3")]);
    expect(expectOk(human)).toBe("queue: orders\nconsumer: c2\nunregistered: true\n");
    expect(asJson).toEqual({ queue: "orders", consumer: "c3", unregistered: true });
    expect(await consumersOf("orders")).toEqual(["c1"]);
    expectFailed(await cli("unregister", "orders", "c3"), "unregister", "not_found");
  });

  it("queue-rename: renames a queue, consumers and ticking follow; to a taken name → exit 1 conflict", async () => {
    const [human, asJson] = await Promise.all([cli("queue-rename", "orders", "orders_v2"), json("queue-rename", "spare", "spare_v2")]);
    expect(expectOk(human)).toBe("old: orders\nnew: orders_v2\nrenamed: true\n");
    expect(asJson).toEqual({ old: "spare", new: "spare_v2", renamed: true });
    const before = await lastTickId(db, "orders_v2");
    await db.query("select pgq.force_tick('orders_v2')");
    const [status, taken] = await Promise.all([
      json<{ queues: Array<{ queue: string }>; consumers: Array<{ queue: string; consumer: string }> }>("status"),
      cli("queue-rename", "orders_v2", "spare_v2"),
    ]);
    expect(status.queues.map((q) => q.queue)).toEqual(["orders_v2", "spare_v2"]);
    expect(status.consumers.map((c) => [c.queue, c.consumer])).toEqual([["orders_v2", "c1"]]);
    await waitForTickAfter(db, "orders_v2", before);
    expect(expectFailed(taken, "queue-rename", "conflict")).toContain("queue already exists: spare_v2");
    expect(await queueNames()).toEqual(["orders_v2", "spare_v2"]);
  });

  it("drop: refuses a queue with consumers (exit 1 conflict), drops it once they are gone", async () => {
    const [busy, spare] = await Promise.all([cli("drop", "orders_v2"), json("drop", "spare_v2")]);
    expect(expectFailed(busy, "drop", "conflict")).toContain("consumers still attached");
    expect(spare).toEqual({ queue: "spare_v2", dropped: true });
    expect(await queueNames()).toEqual(["orders_v2"]);
    await db.query("select pgq.unregister_consumer('orders_v2', 'c1')");
    expect(expectOk(await cli("drop", "orders_v2"))).toBe("queue: orders_v2\ndropped: true\n");
    expect(await queueNames()).toEqual([]);
  });

  it("ping: names the running instance and its state", async () => {
    const [human, asJson] = await Promise.all([cli("ping"), cli("--json", "ping")]);
    expect(expectOk(human)).toMatch(new RegExp(`^instance: \\S+-${ticker.pid}\\nstate: active\\nversion: \\d+\\.\\d+\\.\\d+\\n$`));
    expect(JSON.parse(expectOk(asJson))).toEqual({
      instance: expect.stringMatching(new RegExp(`-${ticker.pid}$`)),
      state: "active",
      version: expect.any(String),
    });
  });

  it("reload: re-reads the config file; a broken file is reported (exit 1) and the old config stays", async () => {
    const from = ticker.lines.length;
    const [human, ok] = await Promise.all([cli("reload"), json<{ instance: string; reloaded: boolean }>("reload")]);
    expect(expectOk(human)).toMatch(new RegExp(`^instance: \\S+-${ticker.pid}\\nreloaded: true\\n$`));
    expect(ok).toEqual({ instance: expect.stringMatching(new RegExp(`-${ticker.pid}$`)), reloaded: true });
    await ticker.waitForLog("config reloaded", { from });

    writeFileSync(tickerConf, `[pgqadm]\ndb = ${db.url}\nloop_delay = fast\n`);
    const broken = expectFailed(await cli("reload"), "reload", "internal");
    expect(broken).toContain(`${tickerConf}:3: [pgqadm] loop_delay: not a number: "fast"`);
    expect(broken).toContain("keeping the old config");
    await ticker.waitForLog("config reload failed; keeping the old config", { from });
    expect(ticker.running).toBe(true);
    copyFileSync(conf, tickerConf);
  });

  it("stop: the ticker stops after its current unit of work and exits 0; then nobody answers (exit 3)", async () => {
    const r = await cli("stop");
    expect(expectOk(r)).toMatch(new RegExp(`^instance: \\S+-${ticker.pid}\\nstopping: true\\n$`));
    expect(await ticker.waitForExit(10_000)).toEqual({ code: 0, signal: null });
    await ticker.waitForLog("ticker stopped");
    const none = await cli("--timeout", "1", "ping");
    expect(none.code, show(none)).toBe(3);
  });
});
