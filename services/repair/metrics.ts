/**
 * The repair worker's Prometheus metrics (docs/metrics.md), on the
 * service's registry, counted from what each request answers: its
 * per-table outcomes (compare.ts, repair.ts: row counts per side, the
 * differences found, the fixes applied), or its failure.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { TableOutcome } from "./common.ts";

export interface RepairMetrics {
  /** A request starts. */
  started(command: string): void;
  /** A request was answered with `result` (the per-table outcomes). */
  finished(command: string, result: unknown): void;
  /** A request ended in an error reply. */
  failed(command: string): void;
}

/** What one table's outcome says, as counted. */
export interface OutcomeCounts {
  status: string;
  providerRows: number;
  subscriberRows: number;
  /** Differences found by kind: insert/update/delete (repair), table/range (compare). */
  differences: Record<string, number>;
  /** Fixes applied by kind (repair with apply). */
  applied: Record<string, number>;
}

const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const obj = (v: unknown): Record<string, unknown> => (typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {});

/** The counts of one table's outcome of compare or repair, from the fields their replies carry. */
export function outcomeCounts(command: string, outcome: TableOutcome): OutcomeCounts {
  const counts: OutcomeCounts = { status: outcome.status, providerRows: 0, subscriberRows: 0, differences: {}, applied: {} };
  if (command === "compare") {
    // compare: { provider: { rows }, subscriber: { rows }, ranges?, ranges_more? }
    counts.providerRows = num(obj(outcome.provider).rows);
    counts.subscriberRows = num(obj(outcome.subscriber).rows);
    if (outcome.status === "differ") {
      counts.differences.table = 1;
      if (Array.isArray(outcome.ranges)) counts.differences.range = outcome.ranges.length + num(outcome.ranges_more);
    }
  } else {
    // repair: { provider_rows, subscriber_rows, inserts, updates, deletes, applied?: { inserts, updates, deletes } }
    counts.providerRows = num(outcome.provider_rows);
    counts.subscriberRows = num(outcome.subscriber_rows);
    const applied = obj(outcome.applied);
    for (const [field, kind] of [["inserts", "insert"], ["updates", "update"], ["deletes", "delete"]] as const) {
      counts.differences[kind] = num(outcome[field]);
      if (outcome.applied !== undefined) counts.applied[kind] = num(applied[field]);
    }
  }
  return counts;
}

export function repairMetrics(registry: Registry): RepairMetrics {
  let running = 0;
  const requests = new Counter({
    name: "londiste_repair_requests_total",
    help: "compare and repair requests served, by command and outcome (ok: answered, whatever it found; failed: an error reply)",
    labelNames: ["command", "outcome"],
    registers: [registry],
  });
  const tables = new Counter({
    name: "londiste_repair_tables_total",
    help: "tables compared or repaired, by command and status (equal, differ, repaired, refused, skipped, failed)",
    labelNames: ["command", "status"],
    registers: [registry],
  });
  const rows = new Counter({
    name: "londiste_repair_rows_compared_total",
    help: "rows compared, by command and side (provider, subscriber)",
    labelNames: ["command", "side"],
    registers: [registry],
  });
  const differences = new Counter({
    name: "londiste_repair_differences_total",
    help: "differences found, by command and kind: insert, update, delete (repair); table, range (compare)",
    labelNames: ["command", "kind"],
    registers: [registry],
  });
  const applied = new Counter({
    name: "londiste_repair_fixes_applied_total",
    help: "fixes applied on the subscriber by repair with apply, by kind (insert, update, delete)",
    labelNames: ["kind"],
    registers: [registry],
  });
  new Gauge({
    name: "londiste_repair_running",
    help: "compare and repair requests this worker is serving now",
    registers: [registry],
    collect() {
      this.set(running);
    },
  });
  for (const command of ["compare", "repair"]) for (const outcome of ["ok", "failed"]) requests.inc({ command, outcome }, 0);

  return {
    started: () => void running++,
    finished(command, result) {
      running--;
      requests.inc({ command, outcome: "ok" });
      for (const outcome of Array.isArray(result) ? (result as TableOutcome[]) : []) {
        const c = outcomeCounts(command, outcome);
        tables.inc({ command, status: c.status });
        rows.inc({ command, side: "provider" }, c.providerRows);
        rows.inc({ command, side: "subscriber" }, c.subscriberRows);
        for (const [kind, n] of Object.entries(c.differences)) differences.inc({ command, kind }, n);
        for (const [kind, n] of Object.entries(c.applied)) applied.inc({ kind }, n);
      }
    },
    failed(command) {
      running--;
      requests.inc({ command, outcome: "failed" });
    },
  };
}
