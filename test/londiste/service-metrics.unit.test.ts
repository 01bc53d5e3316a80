/**
 * The londiste services' metrics modules, without databases: what each
 * hook counts, that a scrape-time read that fails or hangs only leaves
 * its metric without samples (a scrape never fails), that a copy's speed
 * and ETA are there only while its rows stream, and what the repair
 * worker counts from the outcomes compare and repair answer.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { copyMetrics } from "../../services/copy/metrics.ts";
import { outcomeCounts, repairMetrics } from "../../services/repair/metrics.ts";
import { replayMetrics, SCRAPE_READ_TIMEOUT_MS } from "../../services/replay/metrics.ts";

/** Samples of a metric as `{labels} value` lines, labels sorted. */
async function samples(registry: Registry, name: string): Promise<string[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .map((v) => `${JSON.stringify(Object.fromEntries(Object.entries(v.labels).sort()))} ${v.value}`)
    .sort();
}

describe("replay metrics", () => {
  it("count changes, missed rows, errors and batches from the hooks", async () => {
    const registry = new Registry();
    const m = replayMetrics(registry);
    m.applied("public.t", "insert", 3);
    m.applied("public.t", "insert", 2);
    m.applied("public.t", "delete", 1);
    m.missed("public.t", "delete", 1);
    m.error("transient");
    m.error("data");
    m.batchApplied(0.2);
    expect(await samples(registry, "londiste_replay_changes_total")).toEqual([
      '{"op":"delete","table":"public.t"} 1',
      '{"op":"insert","table":"public.t"} 5',
    ]);
    expect(await samples(registry, "londiste_replay_missed_rows_total")).toEqual(['{"op":"delete","table":"public.t"} 1']);
    expect(await samples(registry, "londiste_replay_errors_total")).toEqual(['{"kind":"data"} 1', '{"kind":"privilege"} 0', '{"kind":"transient"} 1']);
    expect(await registry.metrics()).toMatch(/^londiste_replay_batch_duration_seconds_count 1$/m);
  });

  it("read the lag and the tables at scrape time, one read for both lag metrics", async () => {
    const registry = new Registry();
    let lagReads = 0;
    replayMetrics(registry, {
      queue: "q",
      lag: async () => {
        lagReads++;
        return { seconds: 1.5, ticks: 3 };
      },
      tableStates: async () => new Map([["ok", 2], ["in-copy", 1], ["error", 0]]),
    });
    const text = await registry.metrics();
    expect(text).toMatch(/^londiste_replay_lag_seconds\{queue="q"\} 1\.5$/m);
    expect(text).toMatch(/^londiste_replay_lag_ticks\{queue="q"\} 3$/m);
    expect(text).toMatch(/^londiste_tables\{state="ok"\} 2$/m);
    expect(text).toMatch(/^londiste_tables\{state="error"\} 0$/m);
    expect(lagReads).toBe(1);
  });

  it("a read that fails or hangs leaves its metric without samples; the scrape goes on", async () => {
    const registry = new Registry();
    replayMetrics(registry, {
      queue: "q",
      lag: () => Promise.reject(new Error("connection refused")),
      tableStates: () => new Promise(() => {}),
    });
    const started = Date.now();
    const text = await registry.metrics();
    expect(Date.now() - started).toBeLessThan(SCRAPE_READ_TIMEOUT_MS + 2000);
    expect(text).toMatch(/^# TYPE londiste_replay_lag_seconds gauge$/m);
    expect(text).not.toMatch(/^londiste_replay_lag_seconds\{/m);
    expect(text).not.toMatch(/^londiste_tables\{/m);
    // The hanging read is not started again meanwhile: the next scrape answers at once.
    const again = Date.now();
    await registry.metrics();
    expect(Date.now() - again).toBeLessThan(1000);
  });
});

describe("copy metrics", () => {
  it("count rows and bytes; speed and ETA only while the rows stream", async () => {
    const registry = new Registry();
    let active = 1;
    const hooks = copyMetrics(registry, { activeCopies: () => active });
    hooks.started("public.t", () => ({ rows: 10, bytes: 2_000_000, mb_per_s: 4, eta_s: 12 }));
    hooks.chunk("public.t", 1000, 10);
    hooks.chunk("public.t", 500, 5);
    expect(await samples(registry, "londiste_copy_rows_total")).toEqual(['{"table":"public.t"} 15']);
    expect(await samples(registry, "londiste_copy_bytes_total")).toEqual(['{"table":"public.t"} 1500']);
    expect(await samples(registry, "londiste_copy_mb_per_second")).toEqual(['{"table":"public.t"} 4']);
    expect(await samples(registry, "londiste_copy_eta_seconds")).toEqual(['{"table":"public.t"} 12']);
    expect(await samples(registry, "londiste_copy_active")).toEqual(["{} 1"]);

    hooks.ended("public.t");
    active = 0;
    expect(await samples(registry, "londiste_copy_mb_per_second")).toEqual([]);
    expect(await samples(registry, "londiste_copy_eta_seconds")).toEqual([]);
    expect(await samples(registry, "londiste_copy_rows_total")).toEqual(['{"table":"public.t"} 15']);
    expect(await samples(registry, "londiste_copy_active")).toEqual(["{} 0"]);
  });

  it("an unknown ETA has no sample", async () => {
    const registry = new Registry();
    const hooks = copyMetrics(registry);
    hooks.started("public.t", () => ({ rows: 0, bytes: 0, mb_per_s: 0, eta_s: null }));
    expect(await samples(registry, "londiste_copy_eta_seconds")).toEqual([]);
    expect(await samples(registry, "londiste_copy_mb_per_second")).toEqual(['{"table":"public.t"} 0']);
  });
});

describe("repair metrics", () => {
  const compared = {
    name: "public.a",
    ok: false,
    status: "differ",
    message: "Results do not match!",
    provider: { rows: 10, checksum: "1" },
    subscriber: { rows: 9, checksum: "2" },
    ranges: [{ after: null, up_to: ["5"], provider_rows: 5, subscriber_rows: 4 }],
    ranges_more: 2,
  };
  const repaired = {
    name: "public.b",
    ok: true,
    status: "repaired",
    message: "finished",
    provider_rows: 100,
    subscriber_rows: 99,
    inserts: 2,
    updates: 1,
    deletes: 1,
    applied: { tick: 7, inserts: 2, updates: 1, deletes: 0 },
  };

  it("read the counts of compare's and repair's outcomes", () => {
    expect(outcomeCounts("compare", compared)).toEqual({
      status: "differ",
      providerRows: 10,
      subscriberRows: 9,
      differences: { table: 1, range: 3 },
      applied: {},
    });
    expect(outcomeCounts("repair", repaired)).toEqual({
      status: "repaired",
      providerRows: 100,
      subscriberRows: 99,
      differences: { insert: 2, update: 1, delete: 1 },
      applied: { insert: 2, update: 1, delete: 0 },
    });
    expect(outcomeCounts("repair", { name: "public.c", ok: false, status: "failed", message: "boom" }).differences).toEqual({ insert: 0, update: 0, delete: 0 });
  });

  it("count requests by outcome, tables by status, rows, differences and fixes", async () => {
    const registry = new Registry();
    const m = repairMetrics(registry);
    m.started("compare");
    expect(await samples(registry, "londiste_repair_running")).toEqual(["{} 1"]);
    m.finished("compare", [compared]);
    m.started("repair");
    m.finished("repair", [repaired]);
    m.started("repair");
    m.failed("repair");
    expect(await samples(registry, "londiste_repair_running")).toEqual(["{} 0"]);
    expect(await samples(registry, "londiste_repair_requests_total")).toEqual([
      '{"command":"compare","outcome":"failed"} 0',
      '{"command":"compare","outcome":"ok"} 1',
      '{"command":"repair","outcome":"failed"} 1',
      '{"command":"repair","outcome":"ok"} 1',
    ]);
    expect(await samples(registry, "londiste_repair_tables_total")).toEqual([
      '{"command":"compare","status":"differ"} 1',
      '{"command":"repair","status":"repaired"} 1',
    ]);
    expect(await samples(registry, "londiste_repair_rows_compared_total")).toEqual([
      '{"command":"compare","side":"provider"} 10',
      '{"command":"compare","side":"subscriber"} 9',
      '{"command":"repair","side":"provider"} 100',
      '{"command":"repair","side":"subscriber"} 99',
    ]);
    expect(await samples(registry, "londiste_repair_differences_total")).toContain('{"command":"compare","kind":"range"} 3');
    expect(await samples(registry, "londiste_repair_fixes_applied_total")).toEqual(['{"kind":"delete"} 0', '{"kind":"insert"} 2', '{"kind":"update"} 1']);
  });
});
