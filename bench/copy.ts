/**
 * The initial copy (target P4 in docs/benchmarks.md). Two throwaway
 * databases on the same server, a provider and a subscriber; for each size in BENCH_COPY_ROWS
 * (default 2M, quick 200k; e.g. BENCH_COPY_ROWS=2000000,5000000) a table
 * of that many rows (int8 primary key, ints, text, numeric, timestamptz:
 * about 110 bytes of COPY text a row) with a secondary index, filled and
 * vacuumed on the provider. Measured in the same run, in this order:
 *   1. the raw pipe, primary key and index dropped and rebuilt: in one
 *      subscriber transaction TRUNCATE, drop both, `COPY (select * from
 *      only t) TO STDOUT` piped (pg-copy-streams, in Node) into `COPY t
 *      FROM STDIN`, add the primary key, create the index, commit (the
 *      baseline);
 *   2. the same raw pipe into the table with its primary key and index
 *      kept; and with keys dropped, TRUNCATE and COPY ... WITH (FREEZE)
 *      in the loading transaction, as the product's copy does it;
 *   3. the product: ticker, replay and one copy worker running as their own
 *      processes (bench/copy-services.ts), `provider add` of the table,
 *      a write load of BENCH_COPY_WRITES (200) single-row changes per
 *      second on it (updates of random rows, some inserts), then
 *      `subscriber add` (no --expect-sync): the time from the command to
 *      merge_state ok, the phases from londiste.sync_outbox, and the
 *      copy's own rows/s and MB/s (its "copy finished" progress report);
 *      (just before it, with the load and the services running, the raw
 *      pipe once more: what the load alone costs the pipe);
 *   4. the raw pipe with keys dropped and rebuilt once more; the baseline
 *      is the mean of 1 and 4, so drift weighs on both sides alike.
 * After the product run the write load stops, replay catches up, and the
 * subscriber table must equal the provider's (count and md5 of the rows).
 * Target: `subscriber add` → ok at ≥ 0.95× the raw pipe's speed, i.e. the
 * raw pipe's seconds / the product's seconds ≥ 0.95.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { type BenchContext, type ResultRow, connect, formatNumber, log, measured, prng } from "./lib.ts";
import { ServiceChild, londisteCli } from "./copy-services.ts";

const P4_TARGET = 0.95;
const QUEUE = "bench_copy";

export interface CopySettings {
  sizes: number[];
  writesPerSecond: number;
}

export function copySettings(env: NodeJS.ProcessEnv, quick: boolean): CopySettings {
  const sizes = (env.BENCH_COPY_ROWS || (quick ? "200000" : "2000000")).split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`BENCH_COPY_ROWS: not a positive integer: ${s}`);
    return n;
  });
  const writes = Number(env.BENCH_COPY_WRITES ?? "200");
  if (!Number.isFinite(writes) || writes < 0) throw new Error(`BENCH_COPY_WRITES: not a number ≥ 0: ${env.BENCH_COPY_WRITES}`);
  return { sizes, writesPerSecond: writes };
}

const tableSql = (name: string) => `
  create table public.${name} (
      id          int8 not null,
      account_id  int4 not null,
      branch_id   int4 not null,
      quantity    int4,
      status      text not null,
      description text,
      amount      numeric(12, 2),
      created_at  timestamptz not null,
      updated_at  timestamptz,
      constraint ${name}_pkey primary key (id)
  );
  create index ${name}_account_idx on public.${name} (account_id, created_at);`;

const FILL_SQL = (name: string, from: number, to: number) => `
  insert into public.${name}
  select g, (g * 7919) % 100000, g % 100, (g % 1000)::int4,
         (array['active', 'pending', 'closed', 'on hold'])[1 + g % 4],
         'order ' || g || ' for customer ' || ((g * 31) % 50000) || ', shipped by ground',
         ((g * 37) % 1000000) / 100.0,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
         timestamptz '2024-06-01 00:00:00+00' + (g % 86400) * interval '1 second'
    from generate_series(${from}::int8, ${to}::int8) g`;

interface RawResult {
  seconds: number;
  copySeconds: number;
  rows: number;
  bytes: number;
}

/** Single-row changes on the table at a steady rate until stopped: 80 % updates of random rows, 20 % inserts of new ids. */
function writeLoad(url: string, table: string, rows: number, perSecond: number): { stop: () => Promise<number> } {
  if (perSecond <= 0) return { stop: async () => 0 };
  let stopping = false;
  let done = 0;
  const random = prng(rows);
  const run = (async () => {
    const c = await connect(url);
    try {
      const start = performance.now();
      let nextId = rows + 1;
      while (!stopping) {
        const due = start + (done * 1000) / perSecond;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        if (random() < 0.8) {
          await c.query(`update public.${table} set quantity = quantity + 1, updated_at = now(), status = 'touched' where id = $1`, [
            1 + Math.floor(random() * rows),
          ]);
        } else {
          const id = nextId++;
          await c.query(
            `insert into public.${table} values ($1::int8, ($1::int8 % 100000)::int4, ($1::int8 % 100)::int4, 1, 'new', 'inserted during the copy', 1.5, now(), null)`,
            [id],
          );
        }
        done++;
      }
    } finally {
      await c.end();
    }
  })();
  let failure: unknown;
  run.catch((error: unknown) => {
    failure = error;
    stopping = true;
  });
  return {
    stop: async () => {
      stopping = true;
      await run.catch(() => {});
      if (failure) throw failure;
      return done;
    },
  };
}

async function tableDigest(db: pg.Client, table: string): Promise<string> {
  const { rows } = await db.query<{ n: string; h: string }>(
    `select count(*)::text as n, coalesce(md5(string_agg(md5(t::text), '' order by id)), '') as h from public.${table} t`,
  );
  return `${rows[0]!.n}:${rows[0]!.h}`;
}

interface ProductResult {
  /** `subscriber add` → ok, wall clock. */
  seconds: number;
  /** From londiste.sync_outbox: seconds in each state, in order. */
  phases: Array<{ state: string | null; seconds: number }>;
  /** From the table's first state change (the command reached replay) to ok: without the command line's start-up. */
  fromRegistration: number | null;
  copyReport: Record<string, unknown> | null;
  changesDuringCopy: number;
}

async function waitFor<T>(what: string, timeoutMs: number, intervalMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function copyWorkloads(ctx: BenchContext): Promise<void> {
  const settings = copySettings(process.env, ctx.settings.quick);
  const providerUrl = await ctx.createDatabase("copy_p");
  const subscriberUrl = await ctx.createDatabase("copy_s");
  const prov = await connect(providerUrl);
  const sub = await connect(subscriberUrl);
  const dir = mkdtempSync(join(tmpdir(), "pgq-bench-copy-"));
  const services: ServiceChild[] = [];
  try {
    const subjectPrefix = `bench${Math.floor(Math.random() * 1e9)}`;
    const natsUrl = process.env.NATS_URL || "nats://127.0.0.1:4222";
    const jobName = "bench_copy_job";
    const tickerConf = join(dir, "ticker.ini");
    writeFileSync(
      tickerConf,
      ["[pgqadm]", "job_name = bench_copy_ticker", `db = ${providerUrl}`, `nats_url = ${natsUrl}`, `subject_prefix = ${subjectPrefix}`, "loop_delay = 0.1", ""].join("\n"),
    );
    const conf = join(dir, "londiste.ini");
    writeFileSync(
      conf,
      [
        "[londiste]",
        `job_name = ${jobName}`,
        `provider_db = ${providerUrl}`,
        `subscriber_db = ${subscriberUrl}`,
        `pgq_queue_name = ${QUEUE}`,
        `nats_url = ${natsUrl}`,
        `subject_prefix = ${subjectPrefix}`,
        "",
      ].join("\n"),
    );

    // Tables first (filled before provider add, so the fill is not captured).
    for (const rows of settings.sizes) {
      const t = `orders_${rows}`;
      const raw = `raw_${rows}`;
      await prov.query(tableSql(t));
      await sub.query(tableSql(t) + tableSql(raw));
      // The raw pipe's table is loaded four times in a row: no autovacuum of it running into the next measurement.
      await sub.query(`alter table public.${raw} set (autovacuum_enabled = false)`);
      log(`copy: filling ${rows.toLocaleString("en-US")} rows into ${t}`);
      const chunk = 500_000;
      for (let from = 1; from <= rows; from += chunk) await prov.query(FILL_SQL(t, from, Math.min(rows, from + chunk - 1)));
      await prov.query(`vacuum (freeze, analyze) public.${t}`);
    }

    services.push(new ServiceChild("ticker", ["pgqadm", tickerConf, "ticker"]));
    const replay = new ServiceChild("replay", ["londiste", conf, "replay"]);
    services.push(replay);
    await replay.waitForLog("active: this instance replays the job", 30_000);
    await londisteCli(conf, "provider", "install");
    await londisteCli(conf, "subscriber", "install");
    // Ticks every 100 ms while rows change (the tick of the end-to-end lag target), as a lagging table's handover needs them.
    await prov.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [QUEUE]);
    const copyWorker = new ServiceChild("copy", ["londiste", conf, "copy"]);
    services.push(copyWorker);
    await copyWorker.waitForLog("copy worker starting", 30_000);

    for (const rows of settings.sizes) await copyOneSize(ctx, settings, { providerUrl, subscriberUrl, prov, sub, conf, copyWorker }, rows);
  } catch (error) {
    for (const s of services) log(`----- ${s.label} output (last lines) -----\n${s.tail(40)}`);
    throw error;
  } finally {
    await Promise.all(services.map((s) => s.kill()));
    // BENCH_COPY_LOGS=DIR keeps the services' output (for a look at the copy's timeline).
    if (process.env.BENCH_COPY_LOGS) for (const s of services) writeFileSync(join(process.env.BENCH_COPY_LOGS, `${s.label}.log`), s.tail(100_000));
    await prov.end();
    await sub.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Env {
  providerUrl: string;
  subscriberUrl: string;
  prov: pg.Client;
  sub: pg.Client;
  conf: string;
  copyWorker: ServiceChild;
}

async function copyOneSize(ctx: BenchContext, settings: CopySettings, env: Env, rows: number): Promise<void> {
  const { providerUrl, subscriberUrl, prov, sub, conf, copyWorker } = env;
  const t = `orders_${rows}`;
  const label = `${(rows / 1e6).toLocaleString("en-US")}M-row table`;
  // The raw pipe copies the provider's orders_N into the subscriber's raw_N (same DDL).
  const raw = async (dropKeys: boolean, freeze = false): Promise<RawResult> => {
    const r = await rawPipeTables(providerUrl, subscriberUrl, t, `raw_${rows}`, dropKeys, freeze);
    if (r.rows < rows) throw new Error(`raw pipe copied ${r.rows} rows, expected at least ${rows}`);
    log(
      `copy ${label}: raw pipe, keys ${dropKeys ? "dropped and rebuilt" : "kept"}${freeze ? ", COPY FREEZE" : ""}: ` +
        `${r.seconds.toFixed(2)} s (rows ${r.copySeconds.toFixed(2)} s)`,
    );
    return r;
  };
  const first = await measured(ctx, `copy.raw.${rows}.a`, () => raw(true));
  const kept = await measured(ctx, `copy.raw-kept.${rows}`, () => raw(false));
  const frozen = await measured(ctx, `copy.raw-freeze.${rows}`, () => raw(true, true));

  await londisteCli(conf, "provider", "add", `public.${t}`);
  const load = writeLoad(providerUrl, t, rows, settings.writesPerSecond);
  await new Promise((r) => setTimeout(r, 1000));
  // The raw pipe under the same load (capture, ticker, replay and writer sharing the cores): how much of the gap is the load.
  const loaded = await measured(ctx, `copy.raw-loaded.${rows}`, () => raw(true));
  const product = await measured(ctx, `copy.product.${rows}`, async (): Promise<ProductResult> => {
    await sub.query("checkpoint");
    const linesBefore = copyWorker.lines.length;
    const start = performance.now();
    await londisteCli(conf, "subscriber", "add", `public.${t}`);
    await waitFor(`${t} to reach ok`, 30 * 60_000, 20, async () => {
      const { rows: r } = await sub.query<{ s: string | null; e: string | null }>(
        "select merge_state as s, last_error as e from londiste.subscriber_table where queue_name = $1 and table_name = $2",
        [QUEUE, `public.${t}`],
      );
      if (r[0]?.s === "error") throw new Error(`${t}: state error: ${r[0].e}`);
      return r[0]?.s === "ok" ? true : undefined;
    });
    const seconds = (performance.now() - start) / 1000;
    const changes = await load.stop();
    const { rows: outbox } = await sub.query<{ to_state: string | null; at: Date }>(
      "select to_state, created_at as at from londiste.sync_outbox where queue_name = $1 and table_name = $2 order by id",
      [QUEUE, `public.${t}`],
    );
    const phases = outbox.slice(0, -1).map((o, i) => ({
      state: o.to_state,
      seconds: Math.round((outbox[i + 1]!.at.getTime() - o.at.getTime())) / 1000,
    }));
    const registered = outbox.length > 1 ? (outbox.at(-1)!.at.getTime() - outbox[0]!.at.getTime()) / 1000 : null;
    const done = copyWorker.lines.slice(linesBefore).find((l) => l.msg === "copy finished: rows in place") ?? null;
    return { seconds, fromRegistration: registered, phases, copyReport: done, changesDuringCopy: changes };
  });
  const second = await measured(ctx, `copy.raw.${rows}.b`, () => raw(true));

  // Replay catches up the load; then the tables must be equal.
  const { rows: tick } = await prov.query<{ t: string }>("select pgq.force_tick($1) as t", [QUEUE]);
  await waitFor("replay to catch up", 120_000, 50, async () => {
    const { rows: r } = await prov.query<{ t: string | null }>(
      "select max(tick_id)::text as t from pgq.tick k join pgq.queue q on q.queue_id = k.tick_queue where q.queue_name = $1",
      [QUEUE],
    );
    if (r[0]!.t === null || Number(r[0]!.t) <= Number(tick[0]!.t)) return undefined;
    const { rows: s } = await sub.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", ["bench_copy_job"]);
    return s[0]!.t !== null && Number(s[0]!.t) > Number(tick[0]!.t) ? true : undefined;
  });
  const [p, s] = await Promise.all([tableDigest(prov, t), tableDigest(sub, t)]);
  if (p !== s) throw new Error(`${t}: the subscriber table differs from the provider's after the copy (${p} vs ${s})`);
  log(`copy ${label}: subscriber equals provider (${p.split(":")[0]} rows)`);

  const base = (first.seconds + second.seconds) / 2;
  const baseRowsPerS = rows / base;
  const productRowsPerS = rows / product.seconds;
  const ratio = base / product.seconds;
  const pass = ratio >= P4_TARGET;
  const bytes = first.bytes;
  const mb = bytes / 1e6;
  const report = product.copyReport as { rows_per_s?: number; mb_per_s?: number; elapsed_s?: number; total_s?: number } | null;
  log(
    `copy ${label}: subscriber add → ok ${product.seconds.toFixed(2)} s (${formatNumber(productRowsPerS, "rows/s")}, ` +
      `${(mb / product.seconds).toFixed(1)} MB/s; ${product.fromRegistration} s from the registration); raw pipe ${base.toFixed(2)} s; ` +
      `ratio ${ratio.toFixed(2)}; ` +
      `phases ${product.phases.map((x) => `${x.state}=${x.seconds}s`).join(" ")}`,
  );
  const detail = (extra: Record<string, unknown>) => ({ rows, copyTextMB: Math.round(mb * 10) / 10, ...extra });
  const rowsOut: ResultRow[] = [
    {
      id: `copy.p4.${rows}`,
      workload: `copy ${label}: subscriber add → ok (write load ${settings.writesPerSecond}/s)`,
      value: productRowsPerS,
      unit: "rows/s",
      baseline: baseRowsPerS,
      baselineLabel: "raw COPY pipe, keys dropped+rebuilt",
      ratio,
      target: rows === 2_000_000 ? `P4 ≥ 0.95×: ${pass ? "PASS" : "FAIL"}` : `(P4 ≥ 0.95× at 2M rows)`,
      pass: rows === 2_000_000 ? pass : null,
      detail: detail({
        seconds: round(product.seconds),
        secondsFromRegistration: product.fromRegistration,
        mbPerS: round(mb / product.seconds),
        baselineSeconds: round(base),
        baselineRuns: [round(first.seconds), round(second.seconds)],
        phases: product.phases,
        changesDuringCopy: product.changesDuringCopy,
        copyReport: product.copyReport,
      }),
    },
    {
      id: `copy.stream.${rows}`,
      workload: `copy ${label}: the copy's row stream (its progress report)`,
      value: report?.rows_per_s ?? null,
      unit: "rows/s",
      baseline: rows / ((first.copySeconds + second.copySeconds) / 2),
      baselineLabel: "raw pipe's row stream",
      ratio: report?.rows_per_s ? report.rows_per_s / (rows / ((first.copySeconds + second.copySeconds) / 2)) : null,
      target: "—",
      pass: null,
      detail: detail({
        mbPerS: report?.mb_per_s ?? null,
        streamSeconds: report?.elapsed_s ?? null,
        copyStepSeconds: report?.total_s ?? null,
        baselineMbPerS: round(mb / ((first.copySeconds + second.copySeconds) / 2)),
      }),
    },
    {
      id: `copy.raw-kept.${rows}`,
      workload: `copy ${label}: raw COPY pipe, keys kept`,
      value: rows / kept.seconds,
      unit: "rows/s",
      baseline: baseRowsPerS,
      baselineLabel: "keys dropped+rebuilt",
      ratio: base / kept.seconds,
      target: "— (baseline variant)",
      pass: null,
      detail: detail({ seconds: round(kept.seconds), mbPerS: round(mb / kept.seconds) }),
    },
    {
      id: `copy.raw-loaded.${rows}`,
      workload: `copy ${label}: raw COPY pipe, keys dropped+rebuilt, under the same write load (services running)`,
      value: rows / loaded.seconds,
      unit: "rows/s",
      baseline: baseRowsPerS,
      baselineLabel: "keys dropped+rebuilt, no load",
      ratio: base / loaded.seconds,
      target: "— (baseline variant)",
      pass: null,
      detail: detail({ seconds: round(loaded.seconds), streamSeconds: round(loaded.copySeconds), mbPerS: round(mb / loaded.seconds) }),
    },
    {
      id: `copy.raw-freeze.${rows}`,
      workload: `copy ${label}: raw COPY pipe, keys dropped+rebuilt, TRUNCATE + COPY FREEZE in the transaction (as the copy)`,
      value: rows / frozen.seconds,
      unit: "rows/s",
      baseline: baseRowsPerS,
      baselineLabel: "keys dropped+rebuilt",
      ratio: base / frozen.seconds,
      target: "— (baseline variant)",
      pass: null,
      detail: detail({ seconds: round(frozen.seconds), streamSeconds: round(frozen.copySeconds), mbPerS: round(mb / frozen.seconds) }),
    },
  ];
  ctx.rows.push(...rowsOut);
}

/** The raw pipe from the provider's `from` into the subscriber's empty `to` (same DDL), in one subscriber transaction. */
async function rawPipeTables(
  providerUrl: string,
  subscriberUrl: string,
  from: string,
  to: string,
  dropKeys: boolean,
  freeze = false,
): Promise<RawResult> {
  const prov = await connect(providerUrl);
  const sub = await connect(subscriberUrl);
  try {
    await sub.query(`truncate public.${to}`);
    await sub.query("checkpoint");
    const start = performance.now();
    await sub.query("begin");
    // As the product does it: TRUNCATE in the loading transaction, which allows COPY ... WITH (FREEZE).
    if (freeze) await sub.query(`truncate public.${to}`);
    if (dropKeys) await sub.query(`alter table public.${to} drop constraint ${to}_pkey; drop index public.${to}_account_idx`);
    await prov.query("begin isolation level repeatable read read only");
    let bytes = 0;
    let rows = 0;
    const source = prov.query(copyTo(`copy (select * from only public.${from}) to stdout`));
    source.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) rows++;
    });
    const copyStart = performance.now();
    await pipeline(source, sub.query(copyFrom(`copy public.${to} from stdin${freeze ? " with (freeze)" : ""}`)));
    const copySeconds = (performance.now() - copyStart) / 1000;
    await prov.query("commit");
    if (dropKeys) {
      await sub.query(`alter table public.${to} add constraint ${to}_pkey primary key (id)`);
      await sub.query(`create index ${to}_account_idx on public.${to} (account_id, created_at)`);
    }
    await sub.query("commit");
    return { seconds: (performance.now() - start) / 1000, copySeconds, rows, bytes };
  } finally {
    await prov.end();
    await sub.end();
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
