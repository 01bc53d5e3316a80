/**
 * PgQ and Londiste benchmark: `npm run bench` (full size) or `BENCH_QUICK=1 npm run bench`
 * / `npm run bench -- --quick` (smoke run).
 *
 * Creates throwaway databases on DATABASE_URL's server, installs PgQ, runs
 *   pgq:     1. pgq.insert_event throughput (synchronous_commit=off), each
 *               beside a plain INSERT of the same row into an ordinary table
 *               of the same shape with the same clients and transaction size;
 *            2. the read of one batch of BENCH_EVENTS events: the batchEvents
 *               iterator, pgq.get_batch_events and a COPY floor, each in a
 *               child process that reports its peak RSS;
 *   capture: 3. Londiste capture overhead on single-row UPDATEs (P1) and on
 *               1000-row UPDATE statements (P1c), row trigger and statement
 *               capture beside the same table without trigger
 *               (bench/londiste-trigger.ts);
 *   replay:  4. replay of an UPDATE backlog and of a mixed I/U/D
 *               backlog: one batch (grouped and naive apply) and the
 *               running services catching up, rows/s and peak RSS, beside
 *               logical replication catching up the same backlogs from a
 *               private publisher cluster (bench/replay-apply.ts);
 *   lag:        end-to-end lag at a steady 1000 tx/s with a 100 ms tick,
 *               replay woken by tick notices and polling, beside logical
 *               replication on the same load (bench/lag.ts);
 *   copy:    5. the initial copy of a 2M-row table (BENCH_COPY_ROWS) by the
 *               product, `subscriber add` → ok under a write load, beside a
 *               raw COPY pipe between the same databases (bench/copy.ts);
 * prints a table and writes bench/results/latest.json, and drops the
 * databases at the end, also on failure. docs/benchmarks.md describes the
 * targets (the P labels of the output) and keeps the latest figures.
 *
 * Environment: DATABASE_URL (server; default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_QUICK=1, BENCH_ONLY (comma-separated groups: pgq, capture, replay, lag, copy, compare; default all),
 * BENCH_EVENTS (read batch size, default 1000000), BENCH_SECONDS (timed length of each
 * insert and capture measurement, default 5), BENCH_FETCH (iterator fetch size, default
 * 1000), BENCH_UPDATE_BACKLOG (default 239000), BENCH_MIXED_BACKLOG (default 1000000),
 * BENCH_PGBENCH=0 (drive the capture workload from Node even when pgbench is installed),
 * BENCH_COPY_ROWS (table sizes of the copy workload, comma-separated; default 2000000,
 * quick 200000), BENCH_COPY_WRITES (changes/s during the copy, default 200), BENCH_COPY_LOGS (a
 * directory to keep the output of the ticker, replay and copy processes in), BENCH_LAG_RATE
 * (tx/s of the lag workload, default 1000), BENCH_LAG_SECONDS (its timed length, default 20,
 * quick 5), BENCH_REPLAY_PROFILE (a directory: CPU profile of the replay process catching up).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { spawn } from "node:child_process";
import { installPgq } from "../shared/pgq/install.ts";
import { insertEvent } from "../shared/pgq/producer.ts";
import { createQueue, tickNow } from "../shared/pgq/queue-admin.ts";
import { nextBatch, registerConsumer } from "../shared/pgq/batch.ts";
import {
  type BenchContext,
  type LoopResult,
  type MachineInfo,
  type ResultRow,
  benchDatabaseName,
  closeAll,
  connect,
  connectMany,
  formatNumber,
  loadAverage,
  log,
  machineInfo,
  measured,
  readSettings,
  renderTable,
  runChildJson,
  runPair,
  urlForDatabase,
  WORKLOAD_GROUPS,
} from "./lib.ts";
import { captureWorkloads } from "./londiste-trigger.ts";
import { Monitor } from "./monitor.ts";
import type { ReadMode, ReadReport } from "./read-batch.ts";
import { replayWorkloads } from "./replay-apply.ts";
import { lagSettings, lagWorkloads } from "./lag.ts";
import { copySettings, copyWorkloads } from "./copy.ts";

const QUEUE = "bench";
const READ_QUEUE = "bench_read";
const READER = "bench_reader";
const P1B_TARGET = 70_000;
const P6_LIMIT_MB = 256;
/** ~100 bytes of urlencoded row, like a Londiste event; "id=<n>&" is put in front. */
const PAYLOAD =
  "name=benchmark+row+with+some+text&amount=12345.67&status=active&updated_at=2024-01-01+12%3A34%3A56";
const EXTRA1 = "public.bench_table";

const PLAIN_TABLE_SQL = `
  create sequence bench_plain_id_seq;
  create table bench_plain (
      ev_id      int8 not null default nextval('bench_plain_id_seq'),
      ev_time    timestamptz not null,
      ev_txid    xid8 not null default pg_current_xact_id(),
      ev_owner   int4,
      ev_retry   int4,
      ev_type    text,
      ev_data    text,
      ev_extra1  text,
      ev_extra2  text,
      ev_extra3  text,
      ev_extra4  text,
      ev_queue   int4 not null,
      ev_slot    int2 not null
  );
  create index bench_plain_txid_idx on bench_plain (ev_txid);`;

const PLAIN_ONE_SQL = `insert into bench_plain
    (ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4, ev_queue, ev_slot)
  values (now(), $1, $2, $3, $4, $5, $6, 1, 0) returning ev_id`;

const PGQ_SET_SQL = `select count(pgq.insert_event($1, 'I', 'id=' || i || '&' || $2, $3, null, null, null))
  from generate_series(1, $4::int4) i`;

const PLAIN_SET_SQL = `insert into bench_plain (ev_time, ev_type, ev_data, ev_extra1, ev_queue, ev_slot)
  select now(), 'I', 'id=' || i || '&' || $1, $2, 1, 0 from generate_series(1, $3::int4) i`;

type Context = BenchContext;

/** Measures one insert workload for PgQ and for the plain-table baseline, on the same number of clients. */
async function insertPair(
  ctx: Context,
  spec: {
    id: string;
    workload: string;
    clients: number;
    eventsPerOp: number;
    pgq: (c: pg.Client, seq: () => number) => Promise<void>;
    plain: (c: pg.Client, seq: () => number) => Promise<void>;
    target: (r: LoopResult) => [string, boolean | null];
  },
): Promise<void> {
  const { durationMs, warmupMs } = ctx.settings;
  const clients = await connectMany(ctx.url, spec.clients);
  try {
    log(`${spec.workload}: pgq and plain INSERT, interleaved`);
    const { a: res, b: base } = await measured(ctx, spec.id, () =>
      runPair(clients, spec.pgq, spec.plain, spec.eventsPerOp, durationMs, warmupMs),
    );
    log(
      `${spec.workload}: ${formatNumber(res.eventsPerSecond, "events/s")}` +
        ` (baseline ${formatNumber(base.eventsPerSecond, "events/s")})`,
    );
    const [target, pass] = spec.target(res);
    ctx.rows.push({
      id: spec.id,
      workload: spec.workload,
      value: res.eventsPerSecond,
      unit: "events/s",
      baseline: base.eventsPerSecond,
      baselineLabel: "plain INSERT",
      ratio: res.eventsPerSecond / base.eventsPerSecond,
      target,
      pass,
      detail: { pgq: res, baseline: base, clients: spec.clients, eventsPerTransaction: spec.eventsPerOp },
    });
  } finally {
    await closeAll(clients);
  }
}

const oneEvent = (seq: () => number) => ({ type: "I", data: `id=${seq()}&${PAYLOAD}`, extra1: EXTRA1 });

async function pgqOne(c: pg.Client, seq: () => number): Promise<void> {
  await insertEvent(c, QUEUE, oneEvent(seq));
}

async function plainOne(c: pg.Client, seq: () => number): Promise<void> {
  const e = oneEvent(seq);
  await c.query(PLAIN_ONE_SQL, [e.type, e.data, e.extra1, null, null, null]);
}

async function inTransaction(c: pg.Client, n: number, op: () => Promise<void>): Promise<void> {
  await c.query("begin");
  for (let i = 0; i < n; i++) await op();
  await c.query("commit");
}

async function insertWorkloads(ctx: Context): Promise<void> {
  const reference = (c: string, pl: string) => [`— (PgQ 3.5: C ${c}, PL ${pl})`, null] as [string, null];
  await insertPair(ctx, {
    id: "insert.1.x1",
    workload: "insert_event, 1 ev/tx, 1 client",
    clients: 1,
    eventsPerOp: 1,
    pgq: pgqOne,
    plain: plainOne,
    target: () => reference("4.1k", "2.2k"),
  });
  await insertPair(ctx, {
    id: "insert.1.x8",
    workload: "insert_event, 1 ev/tx, 8 clients",
    clients: 8,
    eventsPerOp: 1,
    pgq: pgqOne,
    plain: plainOne,
    target: () => reference("13.9k", "8.5k"),
  });
  await insertPair(ctx, {
    id: "insert.1000.x2",
    workload: "insert_event, 1000 ev/tx (1 stmt), 2 clients",
    clients: 2,
    eventsPerOp: 1000,
    pgq: async (c, seq) => {
      seq();
      await c.query(PGQ_SET_SQL, [QUEUE, PAYLOAD, EXTRA1, 1000]);
    },
    plain: async (c, seq) => {
      seq();
      await c.query(PLAIN_SET_SQL, [PAYLOAD, EXTRA1, 1000]);
    },
    target: (r) => {
      const pass = r.eventsPerSecond >= P1B_TARGET;
      return [`P1b ≥ 70k ev/s: ${pass ? "PASS" : "FAIL"}`, pass];
    },
  });
  await insertPair(ctx, {
    id: "insert.1000stmts.x2",
    workload: "insert_event, 1000 stmts/tx, 2 clients",
    clients: 2,
    eventsPerOp: 1000,
    pgq: (c, seq) => inTransaction(c, 1000, () => pgqOne(c, seq)),
    plain: (c, seq) => inTransaction(c, 1000, () => plainOne(c, seq)),
    target: () => ["— (round trips dominate)", null],
  });
}

/** Runs bench/read-batch.ts in a child process and returns its report. */
function readInChild(ctx: Context, mode: ReadMode, batchId: number): Promise<ReadReport> {
  return runChildJson<ReadReport>("read-batch.ts", [
    "--mode",
    mode,
    "--batch",
    String(batchId),
    "--url",
    ctx.url,
    "--fetch",
    String(ctx.settings.fetchSize),
  ]);
}

async function readWorkloads(ctx: Context, main: pg.Client): Promise<void> {
  const n = ctx.settings.events;
  await createQueue(main, READ_QUEUE);
  await registerConsumer(main, READ_QUEUE, READER);

  // Fill: 10k events per statement (one transaction each), 2 clients.
  const chunk = Math.min(10_000, n);
  const fillers = await connectMany(ctx.url, 2);
  let remaining = n;
  const fillStart = performance.now();
  try {
    log(`filling ${n} events into ${READ_QUEUE}`);
    await measured(ctx, "fill", () =>
      Promise.all(
        fillers.map(async (c) => {
          while (remaining > 0) {
            const size = Math.min(chunk, remaining);
            remaining -= size;
            await c.query(PGQ_SET_SQL, [READ_QUEUE, PAYLOAD, EXTRA1, size]);
          }
        }),
      ),
    );
  } finally {
    await closeAll(fillers);
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;
  ctx.rows.push({
    id: "fill",
    workload: `fill: insert_event, ${chunk} ev/tx (1 stmt), 2 clients`,
    value: n / fillSeconds,
    unit: "events/s",
    baseline: null,
    baselineLabel: null,
    ratio: null,
    target: "— (set-up of the read batch)",
    pass: null,
    detail: { events: n, seconds: fillSeconds },
  });

  await tickNow(main, READ_QUEUE);
  const batch = await nextBatch(main, READ_QUEUE, READER);
  if (!batch) throw new Error("no batch after tick");
  const { rows: sqlRows } = await main.query<{ sql: string }>("select pgq.batch_event_sql($1) as sql", [batch.batchId]);
  const { rows: sizeRows } = await main.query<{ bytes: string }>(
    `select sum(pg_total_relation_size(c.oid))::int8 as bytes from pg_class c
      join pg_namespace ns on ns.oid = c.relnamespace
     where ns.nspname = 'pgq' and c.relname like 'event\\_' || (select queue_id from pgq.queue where queue_name = $1) || '\\_%'
       and c.relkind = 'r'`,
    [READ_QUEUE],
  );
  log(`batch ${batch.batchId}: warming the cache`);
  const { rows: countRows } = await main.query<{ n: number }>(`select count(*)::int as n from (${sqlRows[0]!.sql}) s`);
  if (countRows[0]!.n !== n) throw new Error(`batch holds ${countRows[0]!.n} events, expected ${n}`);
  const tableMB = Number(sizeRows[0]!.bytes) / 2 ** 20;

  const reports: Partial<Record<ReadMode, ReadReport>> = {};
  for (const mode of ["copy", "iterator", "raw"] as const) {
    log(`reading the batch: ${mode} (child process)`);
    const report = await measured(ctx, `read.${mode}`, () => readInChild(ctx, mode, batch.batchId));
    if (report.events !== n) throw new Error(`${mode} read ${report.events} events, expected ${n}`);
    log(`${mode}: ${formatNumber(report.eventsPerSecond, "events/s")}, peak RSS ${(report.maxRssKB / 1024).toFixed(0)} MB`);
    reports[mode] = report;
  }
  const copy = reports.copy!;
  const iterator = reports.iterator!;
  const raw = reports.raw!;
  const label = `${n.toLocaleString("en-US")}-event batch`;
  const mb = (kb: number) => kb / 1024;
  const readRow = (id: string, workload: string, r: ReadReport, target: string): ResultRow => ({
    id,
    workload,
    value: r.eventsPerSecond,
    unit: "events/s",
    baseline: r === copy ? null : copy.eventsPerSecond,
    baselineLabel: r === copy ? null : "COPY",
    ratio: r === copy ? null : r.eventsPerSecond / copy.eventsPerSecond,
    target,
    pass: null,
    detail: { ...r, tableMB },
  });
  ctx.rows.push(
    readRow(
      "read.iterator",
      `read ${label}: batchEvents iterator (fetch ${ctx.settings.fetchSize})`,
      iterator,
      "—",
    ),
    readRow("read.raw", `read ${label}: select * from get_batch_events`, raw, "—"),
    readRow("read.copy", `read ${label}: COPY (batch_event_sql) TO STDOUT`, copy, "— (floor)"),
  );
  const iteratorPass = mb(iterator.maxRssKB) <= P6_LIMIT_MB;
  const rssRow = (id: string, workload: string, r: ReadReport, target: string, pass: boolean | null): ResultRow => ({
    id,
    workload,
    value: mb(r.maxRssKB),
    unit: "MB",
    baseline: mb(r.startRssKB),
    baselineLabel: "before read",
    ratio: null,
    target,
    pass,
    detail: { maxRssKB: r.maxRssKB, startRssKB: r.startRssKB },
  });
  ctx.rows.push(
    rssRow(
      "rss.iterator",
      `peak RSS, iterator child (${label})`,
      iterator,
      `flat; ≤ ${P6_LIMIT_MB} MB (P6 budget): ${iteratorPass ? "PASS" : "FAIL"}`,
      iteratorPass,
    ),
    rssRow("rss.raw", `peak RSS, get_batch_events child (${label})`, raw, "— (contrast)", null),
    rssRow("rss.copy", `peak RSS, COPY child (${label})`, copy, "—", null),
  );
}

function disturbanceNotes(ctx: Context, cores: number): string[] {
  const notes: string[] = [];
  for (const [id, d] of Object.entries(ctx.disturbances)) {
    const disturbed = d.foreignCoresAvg >= 0.1 * cores || d.stealPercent >= 5 || d.otherBackendsMax > 0;
    if (disturbed) {
      notes.push(
        `${id}: foreign CPU ${d.foreignCoresAvg} cores avg (max ${d.foreignCoresMax})` +
          `${d.top.length ? ` [${d.top.join(", ")}]` : ""}, steal ${d.stealPercent} %, ` +
          `other-db active backends up to ${d.otherBackendsMax}, load ${d.loadAverage1m}`,
      );
    }
  }
  return notes;
}

function report(ctx: Context, machine: MachineInfo, date: Date, databases: string[], loadBefore: number[]): string {
  const s = ctx.settings;
  const notes = disturbanceNotes(ctx, machine.cores);
  const groups = [...s.only];
  const lines = [
    `PgQ/Londiste benchmark — ${date.toISOString()}${s.quick ? "  (QUICK smoke run: small sizes, not comparable)" : ""}` +
      (groups.length < WORKLOAD_GROUPS.length ? `  (only: ${groups.join(", ")})` : ""),
    `machine:  ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, ${machine.os}`,
    `postgres: ${machine.postgres}`,
    `node:     ${machine.node}`,
    `settings: synchronous_commit=off on every benchmark session; ` +
      `insert and capture workloads: ${s.durationMs / 1000} s timed per side, run as baseline/subject/subject/baseline rounds ` +
      `after ${s.warmupMs / 1000} s warm-up; ` +
      `read batch ${s.events.toLocaleString("en-US")} events; replay backlogs ${s.updateBacklog.toLocaleString("en-US")} ` +
      `UPDATEs and ${s.mixedBacklog.toLocaleString("en-US")} mixed changes; databases ${databases.join(", ")} (dropped at the end)`,
    `baselines: insert_event — plain INSERT of the same row (same columns, sequence default for ev_id, xid8 txid ` +
      `default, index on ev_txid) into an ordinary table, same clients and transaction size, same run; ` +
      `capture — the same UPDATEs on an identical table without trigger, same run; ` +
      `replay — PostgreSQL logical replication catching up the same backlog (private publisher cluster with wal_level = logical, ` +
      `subscriber on this server), and a naive one-statement-per-row apply of the same batch, both in the same run; ` +
      `copy — a raw COPY TO STDOUT | COPY FROM STDIN pipe between the same databases (keys dropped and rebuilt), before and after the product run. ratio = result / baseline`,
    "",
    renderTable(ctx.rows),
    "",
    `load average before: ${loadBefore.join(" ")}; after: ${loadAverage().join(" ")}`,
    notes.length === 0
      ? "disturbance: no foreign CPU load, steal or other-database activity seen during the measurements"
      : `disturbance: load from outside the benchmark seen, figures may be low:\n  ${notes.join("\n  ")}`,
  ];
  return lines.join("\n");
}

async function main(): Promise<void> {
  const settings = readSettings(process.argv.slice(2), process.env);
  const admin = await connect(settings.serverUrl, false);
  const database = benchDatabaseName();
  const clients: pg.Client[] = [];
  /** Every database created so far (dropped at the end); the monitor counts their backends as ours. */
  const databases = new Set<string>();
  let dropping: Promise<void> | undefined;
  const dropDatabases = () =>
    (dropping ??= (async () => {
      await closeAll(clients);
      for (const name of databases) {
        await admin.query(`drop database if exists "${name}" with (force)`);
        log(`dropped database ${name}`);
      }
      await admin.end();
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: dropping ${[...databases].join(", ")}`);
    dropDatabases().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const createDatabase = async (name: string): Promise<string> => {
    if (dropping) throw new Error("benchmark is ending");
    databases.add(name);
    await admin.query(`create database "${name}"`);
    return urlForDatabase(settings.serverUrl, name);
  };

  try {
    const date = new Date();
    const loadBefore = loadAverage();
    const machine = await machineInfo(admin);
    const url = await createDatabase(database);
    log(`created database ${database}; installing PgQ`);
    const main = await connect(url);
    clients.push(main);
    await installPgq(main);
    await createQueue(main, QUEUE);
    await main.query(PLAIN_TABLE_SQL);

    const ctx: Context = {
      settings,
      url,
      monitor: new Monitor(admin, databases),
      rows: [],
      disturbances: {},
      createDatabase: (suffix) => createDatabase(`${database}_${suffix}`),
    };
    if (settings.only.has("pgq")) {
      await insertWorkloads(ctx);
      await readWorkloads(ctx, main);
    }
    if (settings.only.has("capture")) await captureWorkloads(ctx);
    if (settings.only.has("replay")) await replayWorkloads(ctx);
    if (settings.only.has("lag")) await lagWorkloads(ctx);
    if (settings.only.has("copy")) await copyWorkloads(ctx);
    // compare/repair: its own program with its own report (bench/results/compare.json), run as a child.
    if (settings.only.has("compare")) await runCompareBench(settings.quick);

    // The load average at the end of each figure's measurement, next to it in the table.
    for (const row of ctx.rows) {
      const d = ctx.disturbances[row.id] ?? ctx.disturbances[row.id.replace(/^replay\.rss\.(service\.)?/, "replay.")];
      if (row.loadAverage1m === undefined && d) row.loadAverage1m = d.loadAverage1m;
    }
    const text = report(ctx, machine, date, [...databases], loadBefore);
    process.stdout.write(`${text}\n`);
    const dir = fileURLToPath(new URL("./results/", import.meta.url));
    mkdirSync(dir, { recursive: true });
    const json = {
      date: date.toISOString(),
      quick: settings.quick,
      only: [...settings.only],
      machine,
      settings: {
        synchronousCommit: "off",
        events: settings.events,
        insertSeconds: settings.durationMs / 1000,
        warmupSeconds: settings.warmupMs / 1000,
        fetchSize: settings.fetchSize,
        payloadBytes: PAYLOAD.length + 8,
        updateBacklog: settings.updateBacklog,
        mixedBacklog: settings.mixedBacklog,
        copy: copySettings(process.env, settings.quick),
        lag: lagSettings(process.env, settings.quick),
      },
      results: ctx.rows,
      disturbance: ctx.disturbances,
      loadAverage: { before: loadBefore, after: loadAverage() },
      table: text,
    };
    // copy, capture and compare have files of their own: a run of only those keeps the full run's latest.json.
    const ownFile = new Set(["copy", "capture", "compare"]);
    const files = [
      ...([...settings.only].every((g) => ownFile.has(g)) ? [] : ["latest.json"]),
      ...(settings.only.has("copy") ? ["copy.json"] : []),
      ...(settings.only.has("capture") ? ["capture.json"] : []),
    ];
    for (const file of files) {
      writeFileSync(`${dir}${file}`, `${JSON.stringify(json, null, 2)}\n`);
      log(`wrote bench/results/${file}`);
    }
  } finally {
    await dropDatabases();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

/** bench/compare.ts (compare and repair) in a child process: 5M rows, 200k quick, unless BENCH_COMPARE_ROWS says. */
function runCompareBench(quick: boolean): Promise<void> {
  const script = fileURLToPath(new URL("./compare.ts", import.meta.url));
  const env = { ...process.env, BENCH_COMPARE_ROWS: process.env.BENCH_COMPARE_ROWS ?? (quick ? "200000" : "5000000") };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", script], { env, stdio: "inherit" });
    child.on("error", reject);
    child.on("exit", (code: number | null) => (code === 0 ? resolve() : reject(new Error(`bench/compare.ts exited with ${code}`))));
  });
}
