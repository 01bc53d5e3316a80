/**
 * Replay apply speed and memory (targets P2 and P6 in docs/benchmarks.md).
 * Two throwaway databases on the same server: a provider with PgQ and Londiste, where two 100k-row tables
 * of pgbench_accounts' shape are captured (londiste.provider_add_table) into
 * one queue, and a subscriber with the same tables in state ok. Two backlogs
 * are produced through the real capture trigger, one batch each:
 *   1. BENCH_UPDATE_BACKLOG (239k) single-row UPDATE transactions on random
 *      ids: the backlog of single-row UPDATEs;
 *   2. BENCH_MIXED_BACKLOG (1M) single-row transactions, each an UPDATE
 *      (50 %), INSERT (25 %) or DELETE (25 %) of a random live row (new
 *      ids for inserts), in random order: the mixed backlog, which is
 *      also the 1M-event batch of the memory target.
 * Each batch is then replayed twice, by two consumers, each time from the
 * same subscriber table contents: once with grouped apply (applyChanges'
 * default) and once with a naive one-statement-per-row apply
 * (group: false). A replay is one replayOneBatch round in a child process
 * (bench/replay-child.ts: cursor read of the batch, decode, apply in 1000-
 * change chunks, end tick, commit, finish batch), which reports its rows/s
 * and peak RSS. After each replay the subscriber table must equal the
 * provider's, row for row (md5 of the ordered rows).
 *
 * Then the same backlogs again, caught up by the running services
 * (bench/catch-up-services.ts: ticker and replay as processes, replay
 * stopped while the backlog is written): the service-level catch-up, and
 * the peak RSS of replay with merged batches.
 *
 * Baselines, measured in the same run: PostgreSQL logical replication
 * catching up the same backlog (bench/logical-replication.ts: a private
 * publisher cluster with wal_level = logical, the subscriber on this
 * server), and the naive apply.
 */
import type pg from "pg";
import { runSqlScript } from "../shared/db/sql-script.ts";
import { registerConsumer } from "../shared/pgq/batch.ts";
import { installPgq } from "../shared/pgq/install.ts";
import { createQueue, tickNow } from "../shared/pgq/queue-admin.ts";
import { type BenchContext, type ResultRow, closeAll, connect, connectMany, formatNumber, log, measured, prng, runChildJson } from "./lib.ts";
import { accountsTableSql, LONDISTE_INSTALL_SQL } from "./londiste-trigger.ts";
import type { ReplayReport } from "./replay-child.ts";
import { type LrCatchUp, lrCatchUp } from "./logical-replication.ts";
import { type ServiceCatchUp, serviceCatchUp } from "./catch-up-services.ts";

const QUEUE = "bench_replay";
const CONSUMERS = { grouped: "bench_grouped", naive: "bench_naive" } as const;
const ROWS = 100_000;
const PRODUCERS = 4;
/** Transactions sent per round trip by a producer (each its own BEGIN ... COMMIT). */
const TX_PER_TRIP = 100;
const P2_TARGET = 2;
const P6_LIMIT_MB = 256;

interface Backlog {
  id: "update" | "mixed";
  /** Transactions written (a few mixed UPDATEs and DELETEs that raced a DELETE changed nothing). */
  total: number;
  produce: (url: string, table: string, n: number) => Promise<number>;
  table: string;
  label: string;
  changes: number;
  produceSeconds: number;
}

/** Sends `total` single-statement transactions made by `next`, from PRODUCERS clients. */
async function produce(url: string, total: number, next: () => string): Promise<number> {
  const clients = await connectMany(url, PRODUCERS);
  let remaining = total;
  const start = performance.now();
  try {
    await Promise.all(
      clients.map(async (c) => {
        while (remaining > 0) {
          const n = Math.min(TX_PER_TRIP, remaining);
          remaining -= n;
          const parts: string[] = [];
          for (let i = 0; i < n; i++) parts.push(`begin; ${next()}; commit;`);
          await c.query(parts.join("\n"));
        }
      }),
    );
  } finally {
    await closeAll(clients);
  }
  return (performance.now() - start) / 1000;
}

export async function produceUpdates(url: string, table: string, n: number): Promise<number> {
  const rnd = prng(239);
  return produce(url, n, () => {
    const aid = 1 + Math.floor(rnd() * ROWS);
    const delta = Math.floor(rnd() * 10001) - 5000;
    return `update ${table} set abalance = abalance + ${delta} where aid = ${aid}`;
  });
}

export async function produceMixed(url: string, table: string, n: number): Promise<number> {
  const rnd = prng(1000);
  const live = Array.from({ length: ROWS }, (_, i) => i + 1);
  let nextId = ROWS + 1;
  return produce(url, n, () => {
    const r = rnd();
    const delta = Math.floor(rnd() * 10001) - 5000;
    if (r < 0.25 || live.length === 0) {
      const aid = nextId++;
      live.push(aid);
      return `insert into ${table} values (${aid}, ${1 + (aid % 10)}, ${delta}, 'row ${aid}')`;
    }
    const i = Math.floor(rnd() * live.length);
    const aid = live[i]!;
    if (r < 0.5) {
      live[i] = live[live.length - 1]!;
      live.pop();
      return `delete from ${table} where aid = ${aid}`;
    }
    return `update ${table} set abalance = abalance + ${delta}, filler = 'u${delta}' where aid = ${aid}`;
  });
}

/** Events captured for a table (a provider UPDATE or DELETE that raced a concurrent DELETE captured nothing). */
async function eventCount(prov: pg.ClientBase, table: string): Promise<number> {
  const { rows } = await prov.query<{ n: number }>("select count(*)::int as n from pgq.event_template where ev_extra1 = $1", [`public.${table}`]);
  return rows[0]!.n;
}

async function checksum(db: pg.ClientBase, table: string): Promise<string> {
  const { rows } = await db.query<{ sum: string; n: number }>(
    `select md5(string_agg(t::text, ',' order by aid)) as sum, count(*)::int as n from ${table} t`,
  );
  return `${rows[0]!.n}:${rows[0]!.sum}`;
}

/** The subscriber table back to the provider's starting contents, vacuumed, and a checkpoint. */
async function resetSubscriberTable(sub: pg.ClientBase, table: string): Promise<void> {
  await sub.query(`truncate ${table}; insert into ${table} select g, 1, 0, '' from generate_series(1, ${ROWS}) g`);
  await sub.query(`vacuum analyze ${table}`);
  await sub.query("checkpoint");
}

export async function replayWorkloads(ctx: BenchContext): Promise<void> {
  const providerUrl = await ctx.createDatabase("prov");
  const subscriberUrl = await ctx.createDatabase("sub");
  const prov = await connect(providerUrl);
  const sub = await connect(subscriberUrl);
  try {
    log("replay: provider and subscriber databases, PgQ and Londiste, captured tables");
    await installPgq(prov);
    await runSqlScript(prov, LONDISTE_INSTALL_SQL);
    await runSqlScript(sub, LONDISTE_INSTALL_SQL);
    for (const [db, url] of [
      [prov, providerUrl],
      [sub, subscriberUrl],
    ] as const) {
      await db.query(`alter database "${new URL(url).pathname.slice(1)}" set synchronous_commit = off`);
      await db.query(accountsTableSql("r_update", ROWS) + accountsTableSql("r_mixed", ROWS));
      await db.query("vacuum analyze r_update, r_mixed");
    }
    await createQueue(prov, QUEUE);
    for (const t of ["r_update", "r_mixed"]) {
      await prov.query("select londiste.provider_add_table($1, $2)", [QUEUE, `public.${t}`]);
      await sub.query("select londiste.subscriber_add_table($1, $2)", [QUEUE, `public.${t}`]);
      await sub.query("select londiste.subscriber_set_table_state($1, $2, null, 'ok')", [QUEUE, `public.${t}`]);
    }
    for (const c of Object.values(CONSUMERS)) await registerConsumer(prov, QUEUE, c);

    const s = ctx.settings;
    const backlogs: Backlog[] = [];
    log(`replay: producing ${s.updateBacklog.toLocaleString("en-US")} single-row UPDATE transactions (captured)`);
    const updSeconds = await produceUpdates(providerUrl, "r_update", s.updateBacklog);
    await tickNow(prov, QUEUE);
    backlogs.push({
      id: "update",
      total: s.updateBacklog,
      produce: produceUpdates,
      table: "r_update",
      label: "single-row UPDATE backlog",
      changes: await eventCount(prov, "r_update"),
      produceSeconds: updSeconds,
    });
    log(`replay: producing ${s.mixedBacklog.toLocaleString("en-US")} single-row I/U/D transactions (captured)`);
    const mixSeconds = await produceMixed(providerUrl, "r_mixed", s.mixedBacklog);
    await tickNow(prov, QUEUE);
    backlogs.push({
      id: "mixed",
      total: s.mixedBacklog,
      produce: produceMixed,
      table: "r_mixed",
      label: "mixed backlog (I/U/D 25/50/25 %)",
      changes: await eventCount(prov, "r_mixed"),
      produceSeconds: mixSeconds,
    });

    for (const b of backlogs) {
      log(`replay ${b.label}: logical replication catching up the same backlog (baseline)`);
      const lr = await measured(ctx, `replay.${b.id}.lr`, () =>
        lrCatchUp(ctx.createDatabase, { id: b.id, rows: ROWS, total: b.total, produce: b.produce }),
      );
      const expected = await checksum(prov, b.table);
      const reports: Partial<Record<keyof typeof CONSUMERS, ReplayReport>> = {};
      for (const mode of ["grouped", "naive"] as const) {
        await resetSubscriberTable(sub, b.table);
        log(`replay ${b.label}, ${b.changes.toLocaleString("en-US")} changes: ${mode} apply (child process)`);
        const report = await measured(ctx, `replay.${b.id}.${mode}`, () =>
          runChildJson<ReplayReport>("replay-child.ts", [
            "--provider",
            providerUrl,
            "--subscriber",
            subscriberUrl,
            "--queue",
            QUEUE,
            "--consumer",
            CONSUMERS[mode],
            "--group",
            mode === "grouped" ? "1" : "0",
          ]),
        );
        if (report.tableErrors.length > 0) throw new Error(`replay ${mode}: tables put in error: ${report.tableErrors.join(", ")}`);
        if (report.changes !== b.changes) throw new Error(`replay ${mode}: applied ${report.changes} changes, expected ${b.changes}`);
        const got = await checksum(sub, b.table);
        if (got !== expected) throw new Error(`replay ${mode}: subscriber ${b.table} differs from the provider's (${got} vs ${expected})`);
        log(
          `${mode}: ${formatNumber(report.rowsPerSecond, "rows/s")} in ${report.statements.toLocaleString("en-US")} statements ` +
            `(${report.seconds.toFixed(2)} s, ${report.applySeconds.toFixed(2)} s of it in applyChanges), ` +
            `peak RSS ${(report.maxRssKB / 1024).toFixed(0)} MB; subscriber table = provider table`,
        );
        reports[mode] = report;
      }
      log(`replay ${b.label}: service-level catch-up (ticker and replay processes)`);
      const svc = await measured(ctx, `replay.${b.id}.service`, () =>
        serviceCatchUp(ctx.createDatabase, { id: b.id, rows: ROWS, total: b.total, produce: b.produce }),
      );
      pushRows(ctx, b, lr, reports.grouped!, reports.naive!, svc);
    }
  } finally {
    await prov.end();
    await sub.end();
  }
}

function pushRows(ctx: BenchContext, b: Backlog, lr: LrCatchUp, grouped: ReplayReport, naive: ReplayReport, svc: ServiceCatchUp): void {
  const n = `${(b.changes / 1000).toLocaleString("en-US")}k`;
  const detail = (r: object) => ({ ...r, producedSeconds: b.produceSeconds, producedPerSecond: b.changes / b.produceSeconds });
  const vsLr = (value: number, label: string, target: string): Pick<ResultRow, "baseline" | "baselineLabel" | "ratio" | "target" | "pass"> => {
    const ratio = value / lr.rowsPerSecond;
    const pass = ratio >= P2_TARGET;
    return { baseline: lr.rowsPerSecond, baselineLabel: "LR, same run", ratio, target: `${label} ≥ 2× LR: ${pass ? "PASS" : "FAIL"}${target}`, pass };
  };
  const rows: ResultRow[] = [
    {
      id: `replay.${b.id}.lr`,
      workload: `logical replication catching up the ${b.label}, ${(b.total / 1000).toLocaleString("en-US")}k tx`,
      value: lr.rowsPerSecond,
      unit: "rows/s",
      baseline: null,
      baselineLabel: null,
      ratio: null,
      target: "— (baseline: private publisher, wal_level = logical)",
      pass: null,
      detail: { ...lr },
    },
    {
      id: `replay.${b.id}.grouped`,
      workload: `replay ${b.label}, ${n} changes, one batch: grouped apply`,
      value: grouped.rowsPerSecond,
      unit: "rows/s",
      ...vsLr(grouped.rowsPerSecond, "P2", `; ${(grouped.rowsPerSecond / naive.rowsPerSecond).toFixed(1)}× naive`),
      detail: detail(grouped),
    },
    {
      id: `replay.${b.id}.naive`,
      workload: `replay ${b.label}, ${n} changes, one batch: naive, 1 statement/row`,
      value: naive.rowsPerSecond,
      unit: "rows/s",
      baseline: lr.rowsPerSecond,
      baselineLabel: "LR, same run",
      ratio: naive.rowsPerSecond / lr.rowsPerSecond,
      target: "— (same-run baseline)",
      pass: null,
      detail: detail(naive),
    },
    {
      id: `replay.${b.id}.service`,
      workload: `catch-up of the running services, ${b.label}, ${(svc.changes / 1000).toLocaleString("en-US")}k changes over ${svc.ticks} ticks`,
      value: svc.rowsPerSecond,
      unit: "rows/s",
      ...vsLr(svc.rowsPerSecond, "P2s", `; ${svc.batches} batches, ${svc.startupSeconds.toFixed(1)} s start-up`),
      detail: { ...svc },
    },
  ];
  const mb = (kb: number) => kb / 1024;
  const rss = (id: string, workload: string, peak: number | null, start: number | null, target: string, pass: boolean | null): ResultRow => ({
    id,
    workload,
    value: peak,
    unit: "MB",
    baseline: start,
    baselineLabel: start === null ? null : "before replay",
    ratio: null,
    target,
    pass,
  });
  if (b.id === "mixed") {
    for (const [mode, r] of [
      ["grouped", grouped],
      ["naive", naive],
    ] as const) {
      const ok = mb(r.maxRssKB) <= P6_LIMIT_MB;
      rows.push(
        rss(
          `replay.rss.${mode}`,
          `peak RSS, replay child, ${n}-change batch, ${mode}`,
          mb(r.maxRssKB),
          mb(r.startRssKB),
          mode === "grouped" ? `≤ ${P6_LIMIT_MB} MB (P6): ${ok ? "PASS" : "FAIL"}` : `≤ ${P6_LIMIT_MB} MB: ${ok ? "yes" : "no"}`,
          mode === "grouped" ? ok : null,
        ),
      );
    }
  }
  if (svc.peakRssMB !== null) {
    const ok = svc.peakRssMB <= P6_LIMIT_MB;
    rows.push(
      rss(
        `replay.rss.service.${b.id}`,
        `peak RSS, replay process catching up the ${b.id} backlog (merged batches)`,
        svc.peakRssMB,
        null,
        `≤ ${P6_LIMIT_MB} MB (P6): ${ok ? "PASS" : "FAIL"}`,
        ok,
      ),
    );
  }
  ctx.rows.push(...rows);
}
