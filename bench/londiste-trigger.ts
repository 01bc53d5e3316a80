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

function pgbench(url: string, script: string, seconds: number): Promise<PgbenchResult> {
  const args = ["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(seconds), "-f", script, url];
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

/** Plain (B) and captured (A) rounds, B A A B after a warm-up of each, as runPair does for Node clients. */
async function pgbenchPair(url: string, scripts: { a: string; b: string }, durationMs: number, warmupMs: number) {
  const round = Math.max(1, Math.round(durationMs / 2000));
  const warm = Math.max(1, Math.round(warmupMs / 2000));
  await pgbench(url, scripts.b, warm);
  const warmA = await pgbench(url, scripts.a, warm);
  const runs: Record<"a" | "b", PgbenchResult[]> = { a: [], b: [] };
  for (const side of ["b", "a", "a", "b"] as const) runs[side].push(await pgbench(url, scripts[side], round));
  const sum = (rs: PgbenchResult[]) => ({
    tps: rs.reduce((s, r) => s + r.tps * r.seconds, 0) / rs.reduce((s, r) => s + r.seconds, 0),
    transactions: rs.reduce((s, r) => s + r.transactions, 0),
    seconds: rs.reduce((s, r) => s + r.seconds, 0),
  });
  return { a: sum(runs.a), b: sum(runs.b), capturedTransactions: warmA.transactions + sum(runs.a).transactions };
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
    await admin.query(accountsTableSql("acc_plain", ROWS) + accountsTableSql("acc_captured", ROWS));
    await createQueue(admin, QUEUE);
    await admin.query("select londiste.provider_add_table($1, 'public.acc_captured')", [QUEUE]);
    await admin.query("vacuum analyze acc_plain, acc_captured");
    const { rows: cfg } = await admin.query<{ proconfig: string[] | null }>(
      `select p.proconfig from pg_trigger t join pg_proc p on p.oid = t.tgfoid
        where t.tgrelid = 'acc_captured'::regclass and not t.tgisinternal limit 1`,
    );

    const workload = `UPDATE 1 row/tx, ${ROWS / 1000}k rows, ${CLIENTS} clients (${usePgbench ? "pgbench" : "node-pg"}): captured`;
    let captured: number;
    let plain: number;
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
      const scripts = { a: script("acc_captured"), b: script("acc_plain") };
      log(`${workload}: pgbench, plain and captured interleaved`);
      const r = await measured(ctx, "capture.update", () => pgbenchPair(url, scripts, ctx.settings.durationMs, ctx.settings.warmupMs));
      captured = r.a.tps;
      plain = r.b.tps;
      detail = { driver: "pgbench", captured: r.a, plain: r.b, capturedTransactions: r.capturedTransactions };
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
    const { rows: ev } = await admin.query<{ n: string }>(
      "select count(*) as n from pgq.event_template where ev_queue = (select queue_id from pgq.queue where queue_name = $1)",
      [QUEUE],
    );
    const events = Number(ev[0]!.n);
    if (usePgbench && events !== detail.capturedTransactions) {
      throw new Error(`capture: ${events} events for ${String(detail.capturedTransactions)} captured transactions`);
    }
    const ratio = captured / plain;
    const pass = ratio >= P1_TARGET;
    log(`${workload}: ${formatNumber(captured, "tx/s")} (no trigger ${formatNumber(plain, "tx/s")}, ${(ratio * 100).toFixed(0)} %)`);
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await admin.end();
  }
}
