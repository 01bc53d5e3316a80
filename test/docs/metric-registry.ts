/**
 * The metrics the services register, read from the code: the londiste
 * services' metrics modules (registered on a fresh registry, no service
 * started) and the metrics defined elsewhere (the service shell's, the
 * ticker's, the log shipper's), found in the source of services/ and
 * shared/. docs/metrics.md and the Grafana dashboard are checked against it.
 */
import { Registry } from "prom-client";
import { copyMetrics } from "../../services/copy/metrics.ts";
import { repairMetrics } from "../../services/repair/metrics.ts";
import { replayMetrics } from "../../services/replay/metrics.ts";
import { filesUnder, read } from "./docs-helpers.ts";

export interface MetricFacts {
  type: string;
  labels: string[];
}

/** The metrics of the londiste services, from their metrics modules. */
export async function metricsFromModules(): Promise<Map<string, MetricFacts>> {
  const registry = new Registry();
  replayMetrics(registry);
  copyMetrics(registry);
  repairMetrics(registry);
  const out = new Map<string, MetricFacts>();
  for (const m of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
    out.set(m.name, { type: String(m.type), labels: [...(metric.labelNames ?? [])].sort() });
  }
  return out;
}

/** `new Counter({ name: "x", ... labelNames: [...] ... registers` anywhere in services/ and shared/. */
export function metricsFromSource(): Map<string, MetricFacts & { file: string }> {
  const out = new Map<string, MetricFacts & { file: string }>();
  const files = [...filesUnder("services"), ...filesUnder("shared")].filter((f) => f.endsWith(".ts"));
  for (const file of files) {
    const text = read(file);
    for (const m of text.matchAll(/new (Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{\s*name:\s*"([^"]+)"/g)) {
      const rest = text.slice(m.index + m[0].length);
      const end = rest.search(/registers:|\}\)/);
      const labels = /labelNames:\s*\[([^\]]*)\]/.exec(end < 0 ? rest : rest.slice(0, end));
      out.set(m[2]!, {
        type: m[1]!.toLowerCase(),
        labels: labels ? [...labels[1]!.matchAll(/"([^"]+)"/g)].map((l) => l[1]!).sort() : [],
        file,
      });
    }
  }
  return out;
}
