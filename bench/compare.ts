/**
 * compare/repair benchmark (target P5 in docs/benchmarks.md), standalone:
 *
 *   npx tsx bench/compare.ts                 # 5,000,000 rows
 *   BENCH_COMPARE_ROWS=1000000 npx tsx bench/compare.ts
 *
 * Creates a provider and a subscriber database on DATABASE_URL's server
 * (default postgres://postgres@127.0.0.1:5432/postgres), fills the same
 * table on both (id int8 key, int, text, numeric, timestamptz, jsonb), sets
 * the job up with londiste's SQL API, and runs replay in this process
 * (the real replay round, which honours the hold). Then, in the same run:
 *
 *   1. baselines, both sides at the same time:
 *        scan:  select count(*) from only t                (the bare sequential scan)
 *        read:  copy (select * from only t) to '/dev/null'  (one sequential scan printing
 *               every value, on the server: what reading the table once costs)
 *   2. compare (the worker's command handler, snapshot method: tick, hold,
 *      both checksums at once) of the table;
 *   3. 1,000 scattered differences planted on the subscriber (600 updates,
 *      200 deletes, 200 extra rows): ranged compare, repair to a fix file,
 *      repair --apply (with how long replay was held), compare again
 *      (must be equal).
 *
 * Prints a table, writes bench/results/compare.json, drops the databases
 * (also on failure). `npm run bench` runs it as a child for its compare
 * group (BENCH_ONLY=compare).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { CommandError } from "../shared/bus/replies.ts";
import { applyChanges } from "../shared/londiste/apply.ts";
import { withPinnedSettings } from "../shared/londiste/compare/settings.ts";
import { installLondiste } from "../shared/londiste/install.ts";
import { loadTableSync, writeTransition } from "../shared/londiste/sync-store.ts";
import { createLogger } from "../shared/log.ts";
import { createQueue, installPgq, registerConsumer } from "../shared/pgq/index.ts";
import { compareCommand } from "../services/repair/compare.ts";
import type { RepairContext } from "../services/repair/context.ts";
import { repairCommand } from "../services/repair/repair.ts";
import { replayOneBatch } from "../services/replay/replay-batch.ts";

const SERVER = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROWS = Number(process.env.BENCH_COMPARE_ROWS ?? 5_000_000);
const DIFFS = 1000;
const QUEUE = "bench_cmp";
const CONSUMER = "bench_cmp_job";
const TABLE = "public.t";

const log = (msg: string) => process.stderr.write(`[bench:compare] ${msg}\n`);

function urlFor(db: string): string {
  const u = new URL(SERVER);
  u.pathname = `/${db}`;
  return u.toString();
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: SERVER });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function timed<T>(label: string, work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await work();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  log(`${label}: ${seconds.toFixed(2)} s`);
  return { seconds, value };
}

const TABLE_SQL = `create table public.t (id int8 primary key, a int, b text, c numeric, d timestamptz, e jsonb)`;
const FILL_SQL = `insert into public.t
  select g, g % 1000, md5(g::text), g * 1.5, '2020-01-01 00:00+00'::timestamptz + g * interval '1 s', jsonb_build_object('k', g, 'tag', g % 7)
    from generate_series(1, ${ROWS}) g`;

async function main(): Promise<void> {
  const suffix = `${Date.now().toString(36)}${process.pid}`;
  const names = { provider: `bench_cmp_p_${suffix}`, subscriber: `bench_cmp_s_${suffix}` };
  const dir = mkdtempSync(join(tmpdir(), "bench-compare-"));
  await admin(`create database ${names.provider}`);
  await admin(`create database ${names.subscriber}`);
  // Pinned like the repair worker's pools.
  const provider = new pg.Pool(withPinnedSettings<pg.PoolConfig>({ connectionString: urlFor(names.provider), max: 12 }));
  const subscriber = new pg.Pool(withPinnedSettings<pg.PoolConfig>({ connectionString: urlFor(names.subscriber), max: 12 }));
  // Replay gets pools of its own, with the session settings it runs under as a service.
  const replayProvider = new pg.Pool({ connectionString: urlFor(names.provider), max: 3 });
  const replaySubscriber = new pg.Pool({ connectionString: urlFor(names.subscriber), max: 3 });
  const stopReplay = new AbortController();
  let replayLoop: Promise<void> = Promise.resolve();
  try {
    // ---------------------------------------------------------------- setup
    await installPgq(provider);
    await installLondiste(provider);
    await installLondiste(subscriber);
    await createQueue(provider, QUEUE);
    for (const [side, pool] of [
      ["provider", provider],
      ["subscriber", subscriber],
    ] as const) {
      await pool.query(TABLE_SQL);
      await timed(`fill ${ROWS} rows (${side})`, () => pool.query(FILL_SQL));
      await pool.query("vacuum analyze public.t");
    }
    await provider.query("select londiste.provider_add_table($1, $2)", [QUEUE, TABLE]);
    await registerConsumer(provider, QUEUE, CONSUMER);
    {
      const c = await subscriber.connect();
      try {
        await c.query("begin");
        await c.query("select londiste.subscriber_add_table($1, $2)", [QUEUE, TABLE]);
        const added = (await loadTableSync(c, QUEUE, TABLE))!;
        await writeTransition(c, added, { type: "EXPECT_SYNC" }, "admin");
        await c.query("commit");
      } finally {
        c.release();
      }
    }
    const size = (await provider.query<{ s: string }>("select pg_size_pretty(pg_table_size('public.t')) as s")).rows[0]!.s;
    log(`table: ${ROWS} rows, ${size} per side`);

    // Replay, in this process: the real round (it stops at a held tick).
    replayLoop = (async () => {
      const settings = { queue: QUEUE, consumer: CONSUMER, ignoreTruncate: false };
      while (!stopReplay.signal.aborted) {
        try {
          const outcome = await replayOneBatch(replayProvider, replaySubscriber, settings, async (client, changes, destTable) => {
            await applyChanges(client, changes, { destTable, onMissingRow: "error" });
          });
          if (outcome.kind === "idle") await new Promise((r) => setTimeout(r, 20));
        } catch (error) {
          log(`replay round failed: ${(error as Error).message}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();

    const ctx: RepairContext = {
      provider,
      subscriber,
      queue: QUEUE,
      consumer: CONSUMER,
      jobName: "bench",
      log: createLogger({ service: "bench-compare", job: "bench", level: "warn" }),
      instance: `bench:${process.pid}`,
      progress: () => {},
      notifyTick: () => {},
      signal: new AbortController().signal,
      repairDir: () => dir,
    };
    const compare = compareCommand(ctx).handler;
    const repairCtx = { ...ctx };
    let heldFrom = 0;
    let heldSeconds = 0;
    repairCtx.progress = (report) => {
      if (report.phase === "apply" && Array.isArray(report.tables)) heldFrom = Date.now();
    };
    const repair = repairCommand(repairCtx).handler;

    // ---------------------------------------------------------------- 1. baselines and 2. compare
    // Interleaved (scan, read, compare; three rounds; best of each), so a burst of outside load
    // does not fall on one of them only.
    const both = (sql: string) => Promise.all([provider.query(sql), subscriber.query(sql)]);
    let scan = Infinity;
    let read = Infinity;
    let compareSeconds = Infinity;
    let compareResult: unknown;
    for (let round = 1; round <= 3; round++) {
      scan = Math.min(scan, (await timed(`baseline scan: count(*) on both sides at once #${round}`, () => both("select count(*) from only public.t"))).seconds);
      read = Math.min(
        read,
        (await timed(`baseline read: copy (select * ...) to '/dev/null' on both sides at once #${round}`, () => both("copy (select * from only public.t) to '/dev/null'"))).seconds,
      );
      compareSeconds = Math.min(
        compareSeconds,
        (
          await timed(`compare (snapshot method) #${round}`, async () => {
            compareResult = await compare({ tables: [TABLE] });
          })
        ).seconds,
      );
    }
    const equal = (compareResult as Array<{ status: string }>)[0]!.status;
    if (equal !== "equal") throw new Error(`compare of equal tables said ${equal}`);

    // ---------------------------------------------------------------- 3. one difference, located
    await subscriber.query(`update public.t set b = 'one' where id = ${Math.floor(ROWS * 0.618)}`);
    const one = await timed("ranged compare, 1 difference", () => compare({ tables: [TABLE], ranged: true }));
    const oneRanges = ((one.value as Array<{ ranges?: Array<{ provider_rows: number }> }>)[0]!.ranges ?? []);
    if (oneRanges.length !== 1) throw new Error(`ranged compare found ${oneRanges.length} ranges for one difference`);
    await subscriber.query(`update public.t set b = md5(id::text) where id = ${Math.floor(ROWS * 0.618)}`);

    // ---------------------------------------------------------------- 4. 1,000 differences
    const step = Math.floor(ROWS / DIFFS);
    await subscriber.query(
      `update public.t set b = 'changed' where id in (select g * ${step} from generate_series(1, ${DIFFS * 0.6}) g)`,
    );
    await subscriber.query(
      `delete from public.t where id in (select g * ${step} + 1 from generate_series(1, ${DIFFS * 0.2}) g)`,
    );
    await subscriber.query(`insert into public.t (id, a, b) select ${ROWS} + g * 7, 0, 'extra' from generate_series(1, ${DIFFS * 0.2}) g`);
    const differ = await timed("compare, 1,000 differences", () => compare({ tables: [TABLE] }));
    const ranged = await timed("ranged compare (leaf 1000 rows, fanout 16)", () => compare({ tables: [TABLE], ranged: true }));
    const ranges = ((ranged.value as Array<{ ranges?: unknown[] }>)[0]!.ranges ?? []).length;
    let rssPeak = 0;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
    const filed = await timed("repair to a fix file", () => repair({ tables: [TABLE], dir }));
    clearInterval(sampler);
    const found = (filed.value as Array<{ inserts: number; updates: number; deletes: number }>)[0]!;
    const applied = await timed("repair --apply", async () => {
      const r = await repair({ tables: [TABLE], apply: true, dir });
      heldSeconds = (Date.now() - heldFrom) / 1000;
      return r;
    });
    const appliedCounts = (applied.value as Array<{ applied?: { inserts: number; updates: number; deletes: number } }>)[0]!.applied;
    const after = await compare({ tables: [TABLE] });
    if ((after as Array<{ status: string }>)[0]!.status !== "equal") throw new Error("not equal after repair --apply");
    if ((differ.value as Array<{ status: string }>)[0]!.status !== "differ") throw new Error("compare did not see the differences");

    // ---------------------------------------------------------------- report
    const os = await import("node:os");
    const cpus = os.cpus();
    const version = (await provider.query<{ v: string }>("show server_version")).rows[0]!.v;
    const results = {
      date: new Date().toISOString(),
      machine: `${cpus[0]?.model ?? "?"}, ${cpus.length} cores, PostgreSQL ${version}, Node ${process.version}`,
      load_average_at_end: os.loadavg().map((l) => Number(l.toFixed(2))),
      rows: ROWS,
      table_size_per_side: size,
      baseline_scan_s: scan,
      baseline_read_s: read,
      compare_s: compareSeconds,
      compare_vs_read: compareSeconds / read,
      compare_vs_scan: compareSeconds / scan,
      ranged_compare_1_diff_s: one.seconds,
      ranged_1_diff_range_rows: oneRanges[0]!.provider_rows,
      compare_1000_diffs_s: differ.seconds,
      ranged_compare_s: ranged.seconds,
      ranged_ranges: ranges,
      repair_file_s: filed.seconds,
      repair_found: { inserts: found.inserts, updates: found.updates, deletes: found.deletes },
      repair_rss_peak_mb: Math.round(rssPeak / 2 ** 20),
      repair_apply_s: applied.seconds,
      repair_apply_replay_held_s: heldSeconds,
      repair_applied: appliedCounts,
    };
    const rows: Array<[string, string]> = [
      ["table", `${ROWS.toLocaleString("en")} rows, ${size} per side`],
      ["baseline scan: count(*), both sides at once", `${scan.toFixed(2)} s`],
      ["baseline read: copy (select *) to /dev/null, both sides at once", `${read.toFixed(2)} s`],
      ["compare (snapshot method, equal)", `${compareSeconds.toFixed(2)} s = ${(compareSeconds / read).toFixed(2)}x read, ${(compareSeconds / scan).toFixed(2)}x scan`],
      ["ranged compare, 1 difference", `${one.seconds.toFixed(2)} s, located in ${oneRanges[0]!.provider_rows} rows`],
      ["compare, 1,000 differences", `${differ.seconds.toFixed(2)} s`],
      ["ranged compare, 1,000 differences", `${ranged.seconds.toFixed(2)} s, ${ranges} ranges`],
      ["repair to fix file (checksum + merge)", `${filed.seconds.toFixed(2)} s, ${found.inserts}/${found.updates}/${found.deletes} I/U/D, peak RSS ${results.repair_rss_peak_mb} MB`],
      ["repair --apply (both phases)", `${applied.seconds.toFixed(2)} s, replay held ${heldSeconds.toFixed(2)} s`],
    ];
    const width = Math.max(...rows.map((r) => r[0].length));
    rows.push(["load average (1/5/15 min) at the end", results.load_average_at_end.join(" / ")]);
    process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")}\n`);
    const out = fileURLToPath(new URL("./results/", import.meta.url));
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "compare.json"), `${JSON.stringify(results, null, 2)}\n`);
  } catch (error) {
    if (error instanceof CommandError) log(`${error.code}: ${error.message}`);
    throw error;
  } finally {
    stopReplay.abort();
    await replayLoop;
    await Promise.all([provider.end(), subscriber.end(), replayProvider.end(), replaySubscriber.end()]);
    await admin(`drop database if exists ${names.provider} with (force)`);
    await admin(`drop database if exists ${names.subscriber} with (force)`);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
