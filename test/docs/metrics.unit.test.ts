/**
 * docs/metrics.md against the code: every metric a service registers is
 * in its tables with the right type and labels, and the tables name no
 * metric that nothing registers. The londiste services' metrics come from
 * their metrics modules (registered on a fresh registry, no service
 * started); the metrics defined elsewhere (the service shell's, the
 * ticker's) are found in the source of services/ and shared/.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { copyMetrics } from "../../services/copy/metrics.ts";
import { repairMetrics } from "../../services/repair/metrics.ts";
import { replayMetrics } from "../../services/replay/metrics.ts";
import { filesUnder, read } from "./docs-helpers.ts";

interface MetricFacts {
  type: string;
  labels: string[];
}

/** The metrics of the documented tables: | `name` | type | `label`, `label` | meaning |. */
function documented(): Map<string, MetricFacts & { line: string }> {
  const out = new Map<string, MetricFacts & { line: string }>();
  for (const line of read("docs/metrics.md").split("\n")) {
    const m = /^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = [...m[3]!.matchAll(/`([a-z_][a-z0-9_]*)`/g)].map((l) => l[1]!);
    out.set(m[1]!, { type: m[2]!, labels: labels.sort(), line });
  }
  return out;
}

/** The metrics of the londiste services, from their metrics modules. */
async function fromModules(): Promise<Map<string, MetricFacts>> {
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
function fromSource(): Map<string, MetricFacts & { file: string }> {
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

describe("docs/metrics.md", () => {
  it("documents every metric the services register, with its type and labels", async () => {
    const doc = documented();
    const registered = new Map<string, MetricFacts & { from: string }>();
    for (const [name, facts] of fromSource()) registered.set(name, { ...facts, from: facts.file });
    for (const [name, facts] of await fromModules()) registered.set(name, { ...facts, from: "a services/*/metrics.ts module" });
    // The shell's, the ticker's and each londiste service's are all found.
    for (const name of ["skytools_database_up", "pgq_ticks_total", "londiste_replay_lag_seconds", "londiste_copy_rows_total", "londiste_repair_requests_total"]) {
      expect([...registered.keys()]).toContain(name);
    }

    const missing = [...registered].filter(([name]) => !doc.has(name)).map(([name, f]) => `${name} (${f.from})`);
    expect(missing, "metrics registered but not in docs/metrics.md").toEqual([]);
    const wrong = [...registered].flatMap(([name, f]) => {
      const d = doc.get(name)!;
      return d.type === f.type && JSON.stringify(d.labels) === JSON.stringify(f.labels)
        ? []
        : [`${name}: registered as ${f.type} with labels [${f.labels.join(", ")}]; documented: ${d.line}`];
    });
    expect(wrong).toEqual([]);
  });

  it("documents no metric that nothing registers", async () => {
    const registered = new Set([...fromSource().keys(), ...(await fromModules()).keys()]);
    expect([...documented().keys()].filter((name) => !registered.has(name))).toEqual([]);
  });
});
