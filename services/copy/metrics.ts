/**
 * The copy worker's Prometheus metrics (docs/metrics.md), on the
 * service's registry. The rows of a copy are counted through the
 * progress hooks (progress.ts) as they stream; the speed and ETA of the
 * copies streaming right now, and the tables this worker holds, are read
 * when Prometheus scrapes. A table's speed and ETA are there only while
 * its rows stream.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { CopyProgressHooks } from "./progress.ts";

export interface CopyMetricsSources {
  /** How many tables this worker holds now (in any copy state). */
  activeCopies(): number;
}

export function copyMetrics(registry: Registry, sources?: CopyMetricsSources): CopyProgressHooks {
  const streaming = new Map<string, Parameters<CopyProgressHooks["started"]>[1]>();

  const rows = new Counter({
    name: "londiste_copy_rows_total",
    help: "rows streamed from the provider into the subscriber by initial copies, per table (also those of a copy rolled back later)",
    labelNames: ["table"],
    registers: [registry],
  });
  const bytes = new Counter({
    name: "londiste_copy_bytes_total",
    help: "bytes (COPY text format) streamed by initial copies, per table",
    labelNames: ["table"],
    registers: [registry],
  });
  new Gauge({
    name: "londiste_copy_mb_per_second",
    help: "average speed of a copy whose rows are streaming, in MB (10^6 bytes) per second, per table",
    labelNames: ["table"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [table, now] of streaming) this.set({ table }, now().mb_per_s);
    },
  });
  new Gauge({
    name: "londiste_copy_eta_seconds",
    help: "seconds left for a copy whose rows are streaming, at its speed so far (from the provider's row estimate); absent when unknown",
    labelNames: ["table"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [table, now] of streaming) {
        const eta = now().eta_s;
        if (eta !== null) this.set({ table }, eta);
      }
    },
  });
  new Gauge({
    name: "londiste_copy_active",
    help: "tables this copy worker holds: copying rows, catching up or waiting for the handover to replay",
    registers: [registry],
    collect() {
      this.set(sources?.activeCopies() ?? 0);
    },
  });

  return {
    started: (table, now) => {
      streaming.set(table, now);
      rows.inc({ table }, 0);
      bytes.inc({ table }, 0);
    },
    chunk: (table, chunkBytes, chunkRows) => {
      bytes.inc({ table }, chunkBytes);
      rows.inc({ table }, chunkRows);
    },
    ended: (table) => void streaming.delete(table),
  };
}
