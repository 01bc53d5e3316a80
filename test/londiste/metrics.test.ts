/**
 * The londiste services' Prometheus endpoints end to end (docs/metrics.md):
 * ticker, replay and a copy worker run as their own OS processes, replay
 * and the copy worker each with its own metrics_port; a table with a few
 * rows is added and goes to ok. Then replay's /metrics shows the table in
 * state ok, the lag, and the changes of a few replicated writes per table
 * and operation; the copy worker's shows the rows it copied; /readyz of
 * both answers 200 with {ready: true}.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { freePort } from "../support/local-postgres.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitForProgress } from "../support/wait.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

const TABLE = "public.t";
const ROWS = 5;

let job: LondisteJob;
let replayPort: number;
let copyPort: number;

/** A londiste service of the job with its own metrics port (LONDISTE_METRICS_PORT overrides the config). */
function startWithMetrics(command: string, port: number): ServiceProcess {
  return new ServiceProcess(`metrics-${command}`, process.execPath, [LONDISTE_LAUNCHER, job.conf, command], { LONDISTE_METRICS_PORT: String(port) });
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** Sum of the samples of `name` whose labels include every one of `labels`. */
function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function tableState(): Promise<string | null> {
  const { rows } = await job.subscriber.query<{ merge_state: string | null }>(
    "select merge_state from londiste.subscriber_table where queue_name = $1 and table_name = $2",
    [job.queue, TABLE],
  );
  return rows[0]?.merge_state ?? "(not added)";
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "metrics" });
  for (const db of [job.provider, job.subscriber]) await db.query("create table public.t (id int primary key, val text)");
  await job.provider.query(`insert into public.t select g, 'row ' || g from generate_series(1, ${ROWS}) g`);
  [replayPort, copyPort] = [await freePort(), await freePort()];
  const replay = startWithMetrics("replay", replayPort);
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 60_000 });
  await installJob(job);
  const copy = startWithMetrics("copy", copyPort);
  await copy.waitForLog("copy worker starting", { timeoutMs: 60_000 });
  expectOk(await job.londiste("provider", "add", TABLE));
  expectOk(await job.londiste("subscriber", "add", TABLE));
  await waitForProgress({ what: `${TABLE} to reach state ok`, measure: tableState, done: (s) => s === "ok" });
}, 240_000);

afterAll(async () => {
  await job?.drop();
});

describe("londiste metrics", () => {
  it("replay: the table in state ok, the lag, and the changes of replicated writes", async () => {
    const ok = await waitForProgress({
      what: "londiste_tables{state=ok} 1 on replay's /metrics",
      measure: async () => sampleSum(await scrape(replayPort), "londiste_tables", { state: "ok" }),
      done: (n) => n === 1,
    });
    expect(ok).toBe(1);

    await job.provider.query("insert into public.t values (100, 'a'), (101, 'b'), (102, 'c')");
    await job.provider.query("update public.t set val = 'changed' where id = 1");
    await job.provider.query("delete from public.t where id = 2");
    const changes = (text: string) => ({
      insert: sampleSum(text, "londiste_replay_changes_total", { table: TABLE, op: "insert" }),
      update: sampleSum(text, "londiste_replay_changes_total", { table: TABLE, op: "update" }),
      delete: sampleSum(text, "londiste_replay_changes_total", { table: TABLE, op: "delete" }),
    });
    await waitForProgress({
      what: "replay's /metrics to count the replicated writes",
      measure: async () => changes(await scrape(replayPort)),
      done: (c) => c.insert >= 3 && c.update >= 1 && c.delete >= 1,
    });

    const text = await scrape(replayPort);
    expect(text).toMatch(/^londiste_tables\{[^}]*state="ok"[^}]*\} 1$/m);
    expect(text).toMatch(/^londiste_tables\{[^}]*state="error"[^}]*\} 0$/m);
    expect(text).toMatch(/^londiste_replay_lag_seconds\{[^}]*queue="replika"[^}]*\} \d/m);
    expect(text).toMatch(/^londiste_replay_lag_ticks\{[^}]*\} \d+$/m);
    expect(sampleSum(text, "londiste_replay_batch_duration_seconds_count")).toBeGreaterThan(0);
    expect(sampleSum(text, "londiste_replay_errors_total", { kind: "data" })).toBe(0);
    expect(text).toMatch(/service="replay"/);
    expect(text).toMatch(/^skytools_database_up\{[^}]*side="subscriber"[^}]*\} 1$/m);
  });

  it("copy: the rows and bytes it copied", async () => {
    const text = await scrape(copyPort);
    // At least the table's rows (a copy rolled back and done again streams them twice).
    expect(sampleSum(text, "londiste_copy_rows_total", { table: TABLE })).toBeGreaterThanOrEqual(ROWS);
    expect(sampleSum(text, "londiste_copy_bytes_total", { table: TABLE })).toBeGreaterThan(0);
    // The rows are in: no speed or ETA any more.
    expect(text).not.toMatch(/^londiste_copy_mb_per_second\{/m);
    expect(text).not.toMatch(/^londiste_copy_eta_seconds\{/m);
    expect(text).toMatch(/service="copy"/);
  });

  it("/readyz answers 200 with ready: true on both", async () => {
    for (const port of [replayPort, copyPort]) {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ready: true });
    }
  });
});
