/**
 * docs/metrics.md against the code: every metric a service registers is
 * in its tables with the right type and labels, and the tables name no
 * metric that nothing registers. What the services register is read from
 * the code (metric-registry.ts).
 */
import { describe, expect, it } from "vitest";
import { read } from "./docs-helpers.ts";
import { type MetricFacts, metricsFromModules as fromModules, metricsFromSource as fromSource } from "./metric-registry.ts";

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
