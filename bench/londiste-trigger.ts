/**
 * Capture overhead (target P1 in docs/benchmarks.md): pgbench-style single-row UPDATE transactions on a
 * 100k-row table (pgbench_accounts' shape, random ids, 4 clients,
 * synchronous_commit=off) captured by Londiste (londiste.provider_add_table,
 * i.e. the generated trigger writing one PgQ event per row), beside the same
 * workload on an identical table without a trigger, interleaved in the same
 * run (plain, captured, captured, plain after a warm-up of each).
 *
 * Driven by `pgbench` when it is installed (as the reference figures were),
 * otherwise by 4 Node pg clients (their round trips make both sides slower,
 * so the ratio is not comparable with pgbench's). BENCH_PGBENCH=0 forces the
 * Node driver.
 *
 * P1c: UPDATEs of 1000 consecutive rows per statement (2 pgbench clients on
 * disjoint halves of the table) on three identical tables: without trigger,
 * with the row trigger, and with the statement-level capture
 * (londiste.create_capture(queue, table, 'statement'): one event insert per
 * statement over transition tables), interleaved in the same run; rows/s of
 * the statement capture against the row trigger's (target ≥ 3×). P1's
 * single-row workload also runs on the statement-captured table, for
 * comparison (it is slower there: the statement path's fixed cost).
 *
 * Runs in a database of its own, with PgQ and Londiste installed.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { runSqlScript } from "../shared/db/sql-script.ts";
import { installPgq } from "../shared/pgq/install.ts";
import { createQueue } from "../shared/pgq/queue-admin.ts";
import { type BenchContext, closeAll, connect, connectMany, formatNumber, log, measured, runPair } from "./lib.ts";

export const LONDISTE_INSTALL_SQL = fileURLToPath(new URL("../sql/londiste/install.sql", import.meta.url));

const QUEUE = "bench_capture";
const ROWS = 100_000;
const CLIENTS = 4;
const P1_TARGET = 0.7;
const P1C_TARGET = 3;
const P1C_ROWS_PER_STATEMENT = 1000;
const P1C_CLIENTS = 2;

/** pgbench_accounts' shape and fill (scale 1). */
export function accountsTableSql(table: string, rows: number): string {
  return `create table ${table} (aid int primary key, bid int not null, abalance int not null, filler char(84));
    insert into ${table} select g, 1, 0, '' from generate_series(1, ${rows}) g;`;
}

function pgbenchAvailable(): boolean {
  if (process.env.BENCH_PGBENCH === "0") return false;
  const r = spawnSync("pgbench", ["--version"], { stdio: "ignore" });
  return r.status === 0;
}

interface PgbenchResult {
  tps: number;
  transactions: number;
  seconds: number;
}

function pgbench(url: string, script: string, seconds: number, clients = CLIENTS): Promise<PgbenchResult> {
  const args = ["-n", "-c", String(clients), "-j", "2", "-T", String(seconds), "-f", script, url];
  return new Promise((resolve, reject) => {
    const child = spawn("pgbench", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
      const tx = /number of transactions actually processed: (\d+)/.exec(out);
      const failed = /number of failed transactions: (\d+)/.exec(out);
      if (code !== 0 || !tps || !tx || (failed && failed[1] !== "0")) {
        reject(new Error(`pgbench ${args.join(" ")} exited with ${code}: ${out.trim()}`));
        return;
      }
      resolve({ tps: Number(tps[1]), transactions: Number(tx[1]), seconds });
    });
  });
}

type Side = "plain" | "row" | "statement";
const SIDES: Side[] = ["plain", "row", "statement"];

function sumRuns(rs: PgbenchResult[]): PgbenchResult {
  const seconds = rs.reduce((s, r) => s + r.seconds, 0);
  return {
    tps: rs.reduce((s, r) => s + r.tps * r.seconds, 0) / seconds,
    transactions: rs.reduce((s, r) => s + r.transactions, 0),
    seconds,
  };
}

/**
 * Every side warmed up once, then timed rounds in the order plain, row,
 * statement, statement, row, plain (each side sees the same drift of the
 * machine's load). Returns the time-weighted tps of each side and every
 * transaction each script ran (warm-up included), for the event count check.
 */
async function pgbenchRounds(
  url: string,
  scripts: Record<Side, string>,
  durationMs: number,
  warmupMs: number,
  clients: number,
): Promise<{ result: Record<Side, PgbenchResult>; transactions: Record<Side, number> }> {
  const round = Math.max(1, Math.round(durationMs / 2000));
  const warm = Math.max(1, Math.round(warmupMs / 2000));
  const runs: Record<Side, PgbenchResult[]> = { plain: [], row: [], statement: [] };
  const transactions: Record<Side, number> = { plain: 0, row: 0, statement: 0 };
  for (const side of SIDES) transactions[side] += (await pgbench(url, scripts[side], warm, clients)).transactions;
  for (const side of [...SIDES, ...[...SIDES].reverse()]) {
    const r = await pgbench(url, scripts[side], round, clients);
    runs[side].push(r);
    transactions[side] += r.transactions;
  }
  return {
    result: { plain: sumRuns(runs.plain), row: sumRuns(runs.row), statement: sumRuns(runs.statement) },
    transactions,
  };
}

const TABLES: Record<Side, string> = { plain: "acc_plain", row: "acc_captured", statement: "acc_stmt" };

async function eventsOf(admin: pg.Client, table: string): Promise<number> {
  const { rows } = await admin.query<{ n: string }>(
    `select count(*) as n from pgq.event_template
      where ev_queue = (select queue_id from pgq.queue where queue_name = $1) and ev_extra1 = $2`,
    [QUEUE, `public.${table}`],
  );
  return Number(rows[0]!.n);
}

export async function captureWorkloads(ctx: BenchContext): Promise<void> {
  const url = await ctx.createDatabase("capture");
  const admin = await connect(url);
  const usePgbench = pgbenchAvailable();
  const dir = mkdtempSync(path.join(os.tmpdir(), "londiste-bench-"));
  try {
    log(`capture: installing PgQ and Londiste, two ${ROWS.toLocaleString("en-US")}-row tables`);
    await installPgq(admin);
    await runSqlScript(admin, LONDISTE_INSTALL_SQL);
    // Every session of this database, pgbench's too.
    await admin.query(`alter database "${new URL(url).pathname.slice(1)}" set synchronous_commit = off`);
    await admin.query(accountsTableSql("acc_plain", ROWS) + accountsTableSql("acc_captured", ROWS) + accountsTableSql("acc_stmt", ROWS));
    await createQueue(admin, QUEUE);
    await admin.query("select londiste.provider_add_table($1, 'public.acc_captured')", [QUEUE]);
    await admin.query("select londiste.provider_add_table($1, 'public.acc_stmt')", [QUEUE]);
    await admin.query("select londiste.create_capture($1, 'public.acc_stmt', 'statement')", [QUEUE]);
    await admin.query("vacuum analyze acc_plain, acc_captured, acc_stmt");
    const { rows: cfg } = await admin.query<{ proconfig: string[] | null }>(
      `select p.proconfig from pg_trigger t join pg_proc p on p.oid = t.tgfoid
        where t.tgrelid = 'acc_captured'::regclass and not t.tgisinternal limit 1`,
    );

    const workload = `UPDATE 1 row/tx, ${ROWS / 1000}k rows, ${CLIENTS} clients (${usePgbench ? "pgbench" : "node-pg"}): captured`;
    let captured: number;
    let plain: number;
    let statementSingle: number | null = null;
    let detail: Record<string, unknown>;
    if (usePgbench) {
      const script = (table: string) => {
        const file = path.join(dir, `${table}.sql`);
        writeFileSync(
          file,
          `\\set aid random(1, ${ROWS})\n\\set delta random(-5000, 5000)\nupdate ${table} set abalance = abalance + :delta where aid = :aid;\n`,
        );
        return file;
      };
      const scripts: Record<Side, string> = { plain: script(TABLES.plain), row: script(TABLES.row), statement: script(TABLES.statement) };
      log(`${workload}: pgbench, no trigger, row trigger and statement capture interleaved`);
      const r = await measured(ctx, "capture.update", () =>
        pgbenchRounds(url, scripts, ctx.settings.durationMs, ctx.settings.warmupMs, CLIENTS),
      );
      captured = r.result.row.tps;
      plain = r.result.plain.tps;
      statementSingle = r.result.statement.tps;
      detail = {
        driver: "pgbench",
        captured: r.result.row,
        plain: r.result.plain,
        statementCapture: r.result.statement,
        capturedTransactions: r.transactions.row,
        statementTransactions: r.transactions.statement,
      };
    } else {
      const clients = await connectMany(url, CLIENTS);
      try {
        const op = (table: string) => async (c: pg.Client) => {
          const aid = 1 + Math.floor(Math.random() * ROWS);
          const delta = Math.floor(Math.random() * 10001) - 5000;
          await c.query(`update ${table} set abalance = abalance + $1 where aid = $2`, [delta, aid]);
        };
        log(`${workload}: node-pg clients, plain and captured interleaved`);
        const r = await measured(ctx, "capture.update", () =>
          runPair(clients, op("acc_captured"), op("acc_plain"), 1, ctx.settings.durationMs, ctx.settings.warmupMs),
        );
        captured = r.a.eventsPerSecond;
        plain = r.b.eventsPerSecond;
        detail = { driver: "node-pg", captured: r.a, plain: r.b };
      } finally {
        await closeAll(clients);
      }
    }
    const events = await eventsOf(admin, TABLES.row);
    if (usePgbench && events !== detail.capturedTransactions) {
      throw new Error(`capture: ${events} events for ${String(detail.capturedTransactions)} captured transactions`);
    }
    if (usePgbench && (await eventsOf(admin, TABLES.statement)) !== detail.statementTransactions) {
      throw new Error(`capture: statement capture wrote a different number of events than transactions ran`);
    }
    const ratio = captured / plain;
    const pass = ratio >= P1_TARGET;
    log(`${workload}: ${formatNumber(captured, "tx/s")} (no trigger ${formatNumber(plain, "tx/s")}, ${(ratio * 100).toFixed(0)} %)`);
    if (statementSingle !== null) {
      log(`${workload.replace(/captured$/, "statement capture")}: ${formatNumber(statementSingle, "tx/s")} (${((statementSingle / plain) * 100).toFixed(0)} %)`);
    }
    ctx.rows.push({
      id: "capture.update",
      workload,
      value: captured,
      unit: "tx/s",
      baseline: plain,
      baselineLabel: "no trigger",
      ratio,
      target: `P1 ≥ 70 %: ${pass ? "PASS" : "FAIL"} (PgQ 3.5: C ≈75 %, PL ≈13 %)`,
      pass,
      detail: { ...detail, events, triggerSettings: cfg[0]?.proconfig ?? [], rows: ROWS, clients: CLIENTS },
    });
    if (statementSingle !== null) {
      ctx.rows.push({
        id: "capture.update.statement",
        workload: workload.replace(/captured$/, "statement capture"),
        value: statementSingle,
        unit: "tx/s",
        baseline: plain,
        baselineLabel: "no trigger",
        ratio: statementSingle / plain,
        target: "(for comparison: one statement trigger per row)",
        pass: null,
      });
    }
    if (usePgbench) await multiRowWorkload(ctx, url, admin, dir);
    else log("capture P1c: needs pgbench, not measured");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await admin.end();
  }
}

/** P1c: UPDATE of 1000 consecutive rows per statement, no trigger / row trigger / statement capture. */
async function multiRowWorkload(ctx: BenchContext, url: string, admin: pg.Client, dir: string): Promise<void> {
  const half = Math.floor(ROWS / P1C_CLIENTS);
  const script = (table: string) => {
    const file = path.join(dir, `multi_${table}.sql`);
    // Each client its own part of the table: no lock waits between the clients.
    writeFileSync(
      file,
      `\\set a 1 + (:client_id % ${P1C_CLIENTS}) * ${half} + random(0, ${half - P1C_ROWS_PER_STATEMENT})\n` +
        `update ${table} set abalance = abalance + 1 where aid between :a and :a + ${P1C_ROWS_PER_STATEMENT - 1};\n`,
    );
    return file;
  };
  const scripts: Record<Side, string> = { plain: script(TABLES.plain), row: script(TABLES.row), statement: script(TABLES.statement) };
  const workload = `UPDATE ${P1C_ROWS_PER_STATEMENT} rows/statement, ${ROWS / 1000}k rows, ${P1C_CLIENTS} clients (pgbench)`;
  const before = { row: await eventsOf(admin, TABLES.row), statement: await eventsOf(admin, TABLES.statement) };
  log(`${workload}: no trigger, row trigger and statement capture interleaved`);
  const r = await measured(ctx, "capture.multi", () =>
    pgbenchRounds(url, scripts, ctx.settings.durationMs, ctx.settings.warmupMs, P1C_CLIENTS),
  );
  for (const side of ["row", "statement"] as const) {
    const events = (await eventsOf(admin, TABLES[side])) - before[side];
    if (events !== r.transactions[side] * P1C_ROWS_PER_STATEMENT) {
      throw new Error(`capture P1c: ${side} capture wrote ${events} events for ${r.transactions[side]} statements`);
    }
  }
  const rowsPerSecond = (side: Side) => r.result[side].tps * P1C_ROWS_PER_STATEMENT;
  const ratio = rowsPerSecond("statement") / rowsPerSecond("row");
  const pass = ratio >= P1C_TARGET;
  log(
    `${workload}: statement capture ${formatNumber(rowsPerSecond("statement"), "rows/s")}, row trigger ` +
      `${formatNumber(rowsPerSecond("row"), "rows/s")} (${ratio.toFixed(2)}×), no trigger ${formatNumber(rowsPerSecond("plain"), "rows/s")}`,
  );
  ctx.rows.push({
    id: "capture.multi.row",
    workload: `${workload}: row trigger`,
    value: rowsPerSecond("row"),
    unit: "rows/s",
    baseline: rowsPerSecond("plain"),
    baselineLabel: "no trigger",
    ratio: rowsPerSecond("row") / rowsPerSecond("plain"),
    target: "(the P1c baseline)",
    pass: null,
    detail: { result: r.result.row, statements: r.transactions.row },
  });
  ctx.rows.push({
    id: "capture.multi",
    workload: `${workload}: statement capture`,
    value: rowsPerSecond("statement"),
    unit: "rows/s",
    baseline: rowsPerSecond("row"),
    baselineLabel: "row trigger",
    ratio,
    target: `P1c ≥ ${P1C_TARGET}× the row trigger: ${pass ? "PASS" : "FAIL"}`,
    pass,
    detail: {
      statement: r.result.statement,
      row: r.result.row,
      plain: r.result.plain,
      ofNoTrigger: rowsPerSecond("statement") / rowsPerSecond("plain"),
      clients: P1C_CLIENTS,
      rowsPerStatement: P1C_ROWS_PER_STATEMENT,
    },
  });
}
