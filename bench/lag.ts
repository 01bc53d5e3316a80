/**
 * End-to-end lag (target P3 in docs/benchmarks.md): a steady write load of
 * single-row INSERT transactions on the provider (BENCH_LAG_RATE, default
 * 1000 tx/s, from 4 clients, each its own key space), and for every
 * transaction the time from its COMMIT returning on the provider to the
 * row being visible on the subscriber; the writers commit durably
 * (synchronous_commit = on). Visibility is polled (every
 * POLL_MS, the resolution of the figures) on the subscriber: each writer
 * commits its keys in order, so the highest key of a writer seen there
 * tells which of its transactions are visible. Printed: p50, p90, p99 and
 * the maximum over BENCH_LAG_SECONDS (after a warm-up).
 *
 * Three ways of carrying the changes, on the same load, in the same run:
 *   - the product, push: the ticker (`pgqadm CONF ticker`, loop_delay
 *     0.02, the queue's ticker_max_lag 0.1 s: a 100 ms tick) and replay
 *     (`londiste CONF replay`) as processes, replay woken by the ticker's
 *     NATS notice of each tick;
 *   - the product, polling: the same replay without NATS, polling every
 *     loop_delay (0.1 s);
 *   - PostgreSQL logical replication from a private publisher cluster
 *     (bench/logical-replication.ts) to a database on the bench's server.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { type BenchContext, type ResultRow, connect, log, measured, urlForDatabase } from "./lib.ts";
import { londisteCli, ServiceChild } from "./copy-services.ts";
import { startPublisher } from "./logical-replication.ts";
import type { LocalPostgres } from "../test/support/local-postgres.ts";

const WRITERS = 4;
const POLL_MS = 2;
const WARMUP_S = 3;
const P3 = { p50: 60, p99: 150 };
/**
 * How often the ticker asks pgq.ticker() whether a tick is due. The queue's
 * ticker_max_lag (0.1 s) makes the tick; a check only every 100 ms would
 * find it due a moment too early half of the time and tick every 200 ms.
 */
const TICKER_LOOP_S = 0.02;

const TABLE_SQL = "create table public.lag_t (writer int not null, seq int not null, pad text, primary key (writer, seq))";

export interface LagResult {
  transactions: number;
  /** Achieved commit rate over the timed window. */
  rate: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface LoadSettings {
  rate: number;
  seconds: number;
}

export function lagSettings(env: NodeJS.ProcessEnv, quick: boolean): LoadSettings {
  const rate = Number(env.BENCH_LAG_RATE ?? "1000");
  const seconds = Number(env.BENCH_LAG_SECONDS ?? (quick ? "5" : "20"));
  if (!(rate > 0) || !(seconds > 0)) throw new Error("BENCH_LAG_RATE and BENCH_LAG_SECONDS must be positive numbers");
  return { rate, seconds };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Runs the load on `providerUrl` and watches `subscriberUrl`; lags (ms) of the
 * transactions committed in the timed window.
 */
async function measureLag(providerUrl: string, subscriberUrl: string, settings: LoadSettings, run: number): Promise<LagResult> {
  // Writer ids of their own per run on the same table.
  const base = run * WRITERS;
  // Durable commits, as an application makes them: logical replication sends only flushed WAL, so with
  // synchronous_commit = off its lag would be the WAL writer's delay, not its own.
  const writers = await Promise.all(Array.from({ length: WRITERS }, () => connect(providerUrl, false)));
  for (const c of writers) await c.query("set synchronous_commit = on");
  const watcher = await connect(subscriberUrl);
  const committed: number[][] = Array.from({ length: WRITERS }, () => []);
  const seen: number[][] = Array.from({ length: WRITERS }, () => []);
  let stopping = false;
  const start = performance.now();
  const windowFrom = start + WARMUP_S * 1000;
  const windowTo = windowFrom + settings.seconds * 1000;
  try {
    const perWriter = settings.rate / WRITERS;
    const load = writers.map(async (c, w) => {
      let n = 0;
      while (performance.now() < windowTo) {
        const due = start + (n * 1000) / perWriter;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        await c.query("insert into public.lag_t values ($1, $2, 'a row of some text')", [base + w, n]);
        committed[w]!.push(performance.now());
        n++;
      }
    });
    const poll = (async () => {
      const sql = `select ${Array.from({ length: WRITERS }, (_, w) => `(select max(seq) from public.lag_t where writer = ${base + w})`).join(", ")}`;
      for (;;) {
        const sent = performance.now();
        const { rows } = await watcher.query({ text: sql, rowMode: "array" });
        const maxes = rows[0] as Array<number | null>;
        let behind = false;
        for (let w = 0; w < WRITERS; w++) {
          const top = maxes[w] ?? -1;
          while (seen[w]!.length <= top) seen[w]!.push(sent);
          if (seen[w]!.length < committed[w]!.length) behind = true;
        }
        if (stopping && !behind) return;
        if (performance.now() - sent < POLL_MS) await new Promise((r) => setTimeout(r, POLL_MS));
      }
    })();
    // A failing poller must not go unhandled while the writers run.
    poll.catch(() => {});
    await Promise.all(load);
    stopping = true;
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("changes not visible on the subscriber within 60 s")), 60_000).unref());
    await Promise.race([poll, timeout]);
  } finally {
    stopping = true;
    await Promise.allSettled([...writers, watcher].map((c) => c.end()));
  }
  const lags: number[] = [];
  let inWindow = 0;
  for (let w = 0; w < WRITERS; w++) {
    committed[w]!.forEach((t, i) => {
      if (t < windowFrom || t > windowTo) return;
      inWindow++;
      lags.push(Math.max(0, seen[w]![i]! - t));
    });
  }
  lags.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    transactions: inWindow,
    rate: Math.round(inWindow / settings.seconds),
    p50: round(percentile(lags, 50)),
    p90: round(percentile(lags, 90)),
    p99: round(percentile(lags, 99)),
    max: round(lags[lags.length - 1]!),
  };
}

async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The mean interval (ms) between the queue's ticks of the last `seconds`. */
async function tickInterval(prov: pg.ClientBase, queue: string, seconds: number): Promise<{ tickMs: number }> {
  const { rows } = await prov.query<{ ms: number | null }>(
    `select extract(epoch from max(t.tick_time) - min(t.tick_time)) * 1000 / nullif(count(*) - 1, 0) as ms
       from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
      where q.queue_name = $1 and t.tick_time > now() - $2 * interval '1 second'`,
    [queue, seconds],
  );
  return { tickMs: Math.round(Number(rows[0]?.ms ?? 0)) };
}

/** Replay's lag, woken by tick notices (push) or polling. */
async function productLag(ctx: BenchContext, settings: LoadSettings): Promise<{ push: LagResult & { tickMs: number }; poll: LagResult }> {
  const providerUrl = await ctx.createDatabase("lag_p");
  const subscriberUrl = await ctx.createDatabase("lag_s");
  const queue = "bench_lag";
  const job = "bench_lag";
  const dir = mkdtempSync(join(tmpdir(), "pgq-bench-lag-"));
  const services: ServiceChild[] = [];
  const sub = await connect(subscriberUrl);
  const prov = await connect(providerUrl);
  try {
    const natsUrl = process.env.NATS_URL || "nats://127.0.0.1:4222";
    const subjectPrefix = `bench${Math.floor(Math.random() * 1e9)}`;
    const tickerConf = join(dir, "ticker.ini");
    writeFileSync(tickerConf, ["[pgqadm]", `job_name = ${job}_ticker`, `db = ${providerUrl}`, `nats_url = ${natsUrl}`, `subject_prefix = ${subjectPrefix}`, `loop_delay = ${TICKER_LOOP_S}`, ""].join("\n"));
    const londiste = (nats: string) =>
      [
        "[londiste]",
        `job_name = ${job}`,
        `provider_db = ${providerUrl}`,
        `subscriber_db = ${subscriberUrl}`,
        `pgq_queue_name = ${queue}`,
        `nats_url = ${nats}`,
        `subject_prefix = ${subjectPrefix}`,
        "loop_delay = 0.1",
        "",
      ].join("\n");
    const conf = join(dir, "londiste.ini");
    writeFileSync(conf, londiste(natsUrl));
    // Polling: NATS at a port where nothing listens.
    const pollConf = join(dir, "londiste-poll.ini");
    writeFileSync(pollConf, londiste("nats://127.0.0.1:1"));
    for (const [db, url] of [
      [prov, providerUrl],
      [sub, subscriberUrl],
    ] as const) {
      await db.query(`alter database "${new URL(url).pathname.slice(1)}" set synchronous_commit = off`);
      await db.query(TABLE_SQL);
    }
    services.push(new ServiceChild("ticker", ["pgqadm", tickerConf, "ticker"]));
    let replay = new ServiceChild("replay", ["londiste", conf, "replay"]);
    services.push(replay);
    await replay.waitForLog("active: this instance replays the job", 60_000);
    await londisteCli(conf, "provider", "install");
    await londisteCli(conf, "subscriber", "install");
    await prov.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [queue]);
    await londisteCli(conf, "provider", "add", "public.lag_t");
    await londisteCli(conf, "subscriber", "add", "public.lag_t", "--expect-sync");
    await waitUntil("replay to stand at a tick", 60_000, async () => {
      const { rows } = await sub.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job]);
      return rows[0]!.t !== null;
    });
    await replay.waitForLog("waking on tick notices", 30_000);
    log(`P3: replay woken by tick notices: ${settings.rate} tx/s for ${settings.seconds} s`);
    const push = await measured(ctx, "lag.push", async () => ({ ...(await measureLag(providerUrl, subscriberUrl, settings, 0)), ...(await tickInterval(prov, queue, settings.seconds)) }));
    log(`P3 push: ${JSON.stringify(push)}`);
    await replay.kill();
    replay = new ServiceChild("replay-poll", ["londiste", pollConf, "replay"]);
    services.push(replay);
    await replay.waitForLog("active: this instance replays the job", 60_000);
    log(`P3: replay polling every 0.1 s: ${settings.rate} tx/s for ${settings.seconds} s`);
    const poll = await measured(ctx, "lag.poll", () => measureLag(providerUrl, subscriberUrl, settings, 1));
    log(`P3 poll: ${JSON.stringify(poll)}`);
    return { push, poll };
  } catch (error) {
    for (const s of services) log(`----- ${s.label} output (last lines) -----\n${s.tail(40)}`);
    throw error;
  } finally {
    await Promise.all(services.map((s) => s.kill()));
    await prov.end();
    await sub.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Logical replication's lag on the same load: private publisher, subscriber on the bench's server. */
async function lrLag(ctx: BenchContext, settings: LoadSettings): Promise<LagResult> {
  const subscriberUrl = await ctx.createDatabase("lag_lr");
  let cluster: LocalPostgres | undefined;
  const sub = await connect(subscriberUrl);
  const subName = "bench_lag_lr";
  try {
    cluster = await startPublisher();
    const admin = await connect(cluster.url, false);
    await admin.query("create database lr_pub");
    await admin.end();
    const publisherUrl = urlForDatabase(cluster.url, "lr_pub");
    const pub = await connect(publisherUrl);
    try {
      await pub.query(TABLE_SQL);
      await pub.query("create publication bench_pub for table public.lag_t");
    } finally {
      await pub.end();
    }
    await sub.query(TABLE_SQL);
    await sub.query(
      `create subscription ${subName} connection 'host=127.0.0.1 port=${cluster.port} dbname=lr_pub user=postgres' publication bench_pub with (copy_data = false)`,
    );
    await waitUntil("the subscription's apply worker", 60_000, async () => {
      const { rows } = await sub.query("select 1 from pg_stat_subscription where subname = $1 and pid is not null", [subName]);
      return rows.length > 0;
    });
    log(`P3: logical replication: ${settings.rate} tx/s for ${settings.seconds} s`);
    const lr = await measured(ctx, "lag.lr", () => measureLag(publisherUrl, subscriberUrl, settings, 0));
    log(`P3 LR: ${JSON.stringify(lr)}`);
    return lr;
  } finally {
    const { rows } = await sub.query("select 1 from pg_subscription where subname = $1", [subName]).catch(() => ({ rows: [] }));
    if (rows.length > 0) {
      await sub.query(`alter subscription ${subName} disable`).catch(() => {});
      await sub.query(`alter subscription ${subName} set (slot_name = none)`).catch(() => {});
      await sub.query(`drop subscription ${subName}`).catch((e: unknown) => log(`P3: dropping the subscription failed: ${(e as Error).message}`));
    }
    await sub.end();
    await cluster?.stop();
  }
}

export async function lagWorkloads(ctx: BenchContext): Promise<void> {
  const settings = lagSettings(process.env, ctx.settings.quick);
  const { push, poll } = await productLag(ctx, settings);
  const lr = await lrLag(ctx, settings);
  const text = (r: LagResult & { tickMs?: number }) =>
    `p50 ${r.p50} / p90 ${r.p90} / p99 ${r.p99} / max ${r.max} ms at ${r.rate} tx/s${r.tickMs ? `, a tick every ${r.tickMs} ms` : ""}`;
  const row = (id: string, workload: string, r: LagResult, target: string, pass: boolean | null): ResultRow => ({
    id,
    workload,
    value: r.p50,
    unit: "ms p50",
    baseline: lr.p50,
    baselineLabel: "LR p50, same run",
    ratio: null,
    target: `${target}; ${text(r)}`,
    pass,
    detail: { ...r, lr, pollMs: POLL_MS, tickerLoopS: TICKER_LOOP_S },
  });
  const met = push.p50 <= P3.p50 && push.p99 <= P3.p99;
  ctx.rows.push(
    row("lag.push", "end-to-end lag, replay woken by tick notices (100 ms tick)", push, `P3 p50 ≤ 60, p99 ≤ 150 ms: ${met ? "PASS" : "FAIL"}`, met),
    row("lag.poll", "end-to-end lag, replay polling every 0.1 s (no NATS)", poll, "— (what the push wake-up buys)", null),
    row("lag.lr", "end-to-end lag, logical replication, same load", lr, "— (baseline)", null),
  );
}
