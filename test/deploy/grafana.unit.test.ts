/**
 * deploy/grafana/ against the code: every metric the dashboard queries (in
 * its panels and its template variables) is one the services export, read
 * from the code's registry definitions (test/docs/metric-registry.ts, and
 * prom-client's default process metrics from shared/metrics.ts), and every
 * label it selects or groups by is one those metrics carry. The dashboard
 * covers lag, apply rate, copy progress, errors and table states. The
 * Prometheus sample keeps the services' `job` label and scrapes the
 * sample configs' ports.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { createRegistry } from "../../shared/metrics.ts";
import { metricsFromModules, metricsFromSource } from "../docs/metric-registry.ts";
import { readRepo } from "./deploy-helpers.ts";

const DASHBOARD = "deploy/grafana/skytools-londiste.json";

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr: string; refId: string }>;
  panels?: Panel[];
}

interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
}

const dashboard = JSON.parse(readRepo(DASHBOARD)) as Dashboard;

/** Every panel, rows' nested ones included. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Every PromQL expression of the dashboard: panel targets and query variables. */
function expressions(): string[] {
  const panelExprs = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const variableExprs = dashboard.templating.list
    .filter((v) => v.type === "query")
    .map((v) => (typeof v.query === "object" && v.query !== null ? (v.query as { query: string }).query : String(v.query)));
  return [...panelExprs, ...variableExprs];
}

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "inf", "nan"]);

/** What one PromQL expression uses: metric names, and labels per metric (matchers) and in grouping clauses. */
export function promqlUses(expr: string): { metrics: string[]; matchers: Array<{ metric: string | null; label: string }>; grouping: string[] } {
  const matchers: Array<{ metric: string | null; label: string }> = [];
  const grouping: string[] = [];
  // Selectors with label matchers: metric{label="v", ...}; the strings go with them.
  let rest = expr.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g, (_all, metric: string | undefined, body: string) => {
    for (const m of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g)) matchers.push({ metric: metric ?? null, label: m[1]! });
    return metric ?? "";
  });
  rest = rest.replace(/"(?:[^"\\]|\\.)*"/g, " ");
  rest = rest.replace(/\[[^\]]*\]/g, " ");
  rest = rest.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_all, _kw, labels: string) => {
    grouping.push(...labels.split(",").map((l) => l.trim()).filter(Boolean));
    return " ";
  });
  // label_values(metric, label): the label is grouped by.
  rest = rest.replace(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)/g, (_all, metric: string, label: string) => {
    grouping.push(label);
    return ` ${metric} `;
  });
  const metrics: string[] = [];
  for (const m of rest.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const after = rest.slice(m.index + word.length).trimStart();
    if (after.startsWith("(") || KEYWORDS.has(word.toLowerCase())) continue; // a function or an operator
    if (m.index > 0 && /[\d.$]/.test(rest[m.index - 1]!)) continue; // part of a number (1e3) or a variable
    metrics.push(word);
  }
  return { metrics, matchers, grouping };
}

/** Name → labels of everything the services export (their own metrics and prom-client's default ones). */
async function exported(): Promise<Map<string, { type: string; labels: string[] }>> {
  const out = new Map<string, { type: string; labels: string[] }>();
  for (const [name, facts] of metricsFromSource()) out.set(name, facts);
  for (const [name, facts] of await metricsFromModules()) out.set(name, facts);
  const defaults = createRegistry("service", "job");
  for (const m of await defaults.getMetricsAsJSON()) {
    const metric = defaults.getSingleMetric(m.name) as unknown as { labelNames?: string[] };
    out.set(m.name, { type: String(m.type), labels: [...(metric.labelNames ?? [])] });
  }
  return out;
}

/** Series a histogram or summary exports under its name. */
function baseName(name: string, known: Map<string, { type: string }>): string {
  const m = /^(.*)_(bucket|count|sum)$/.exec(name);
  if (m && ["histogram", "summary"].includes(known.get(m[1]!)?.type ?? "")) return m[1]!;
  return name;
}

/** Labels every series has: the services' default labels and the scrape target's. */
const COMMON_LABELS = ["job", "service", "instance"];

describe("the Grafana dashboard", () => {
  it("reads PromQL as intended (the checker itself)", () => {
    expect(promqlUses('sum by (op) (rate(a_total{job=~"$job", op!="x"}[$__rate_interval])) / 1e3')).toEqual({
      metrics: ["a_total"],
      matchers: [
        { metric: "a_total", label: "job" },
        { metric: "a_total", label: "op" },
      ],
      grouping: ["op"],
    });
    expect(promqlUses("histogram_quantile(0.95, sum by (le) (rate(b_bucket[5m]))) and on (job) c").metrics).toEqual(["b_bucket", "c"]);
    expect(promqlUses("label_values(d_seconds, job)")).toEqual({ metrics: ["d_seconds"], matchers: [], grouping: ["job"] });
  });

  it("queries only metrics the services export, with labels they carry", async () => {
    const known = await exported();
    const unknown: string[] = [];
    const badLabels: string[] = [];
    const exprs = expressions();
    expect(exprs.length).toBeGreaterThan(15);
    for (const expr of exprs) {
      const uses = promqlUses(expr);
      expect(uses.metrics.length, `no metric found in ${expr}`).toBeGreaterThan(0);
      const bases = uses.metrics.map((m) => baseName(m, known));
      for (const [i, base] of bases.entries()) if (!known.has(base)) unknown.push(`${uses.metrics[i]} in ${expr}`);
      const labelsOf = (metric: string) => [...COMMON_LABELS, ...(known.get(baseName(metric, known))?.labels ?? []), ...(metric.endsWith("_bucket") ? ["le"] : [])];
      for (const { metric, label } of uses.matchers) {
        if (metric !== null && !labelsOf(metric).includes(label)) badLabels.push(`${metric}{${label}} in ${expr}`);
      }
      const anyLabels = new Set(uses.metrics.flatMap(labelsOf));
      for (const label of uses.grouping) if (!anyLabels.has(label)) badLabels.push(`by (${label}) in ${expr}`);
    }
    expect(unknown, "metrics the dashboard queries that no service exports").toEqual([]);
    expect(badLabels, "labels the queried metrics do not carry").toEqual([]);
  });

  it("shows lag, apply rate, copy progress, errors and table states", () => {
    const used = new Set(expressions().flatMap((e) => promqlUses(e).metrics));
    for (const metric of [
      "londiste_replay_lag_seconds",
      "londiste_replay_changes_total",
      "londiste_copy_rows_total",
      "londiste_copy_eta_seconds",
      "londiste_replay_errors_total",
      "londiste_tables",
    ]) {
      expect([...used]).toContain(metric);
    }
  });

  it("is a well-formed dashboard: unique panel ids, on the 24-column grid, every query on the datasource variable", () => {
    const panels = allPanels(dashboard.panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type !== "row") expect(p.datasource?.uid, p.title).toBe("${datasource}");
    }
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(["datasource", "job"]);
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
  });
});

describe("the Prometheus scrape config sample", () => {
  const config = parse(readRepo("deploy/grafana/prometheus.yml")) as {
    scrape_configs: Array<{ job_name: string; honor_labels?: boolean; static_configs?: Array<{ targets: string[] }> }>;
  };

  it("keeps the services' job label (the dashboard selects by it)", () => {
    expect(config.scrape_configs.length).toBeGreaterThan(0);
    for (const c of config.scrape_configs) expect(c.honor_labels, c.job_name).toBe(true);
  });

  it("scrapes the ports of the sample configs", () => {
    const ports = new Set(config.scrape_configs.flatMap((c) => c.static_configs ?? []).flatMap((s) => s.targets.map((t) => Number(t.split(":")[1]))));
    for (const sample of ["deploy/config/pgqadm.ini", "deploy/config/londiste.ini"]) {
      const port = /^metrics_port\s*=\s*(\d+)/m.exec(readFileSync(new URL(`../../${sample}`, import.meta.url), "utf8"))?.[1];
      expect(port, sample).toBeDefined();
      expect([...ports], sample).toContain(Number(port));
    }
  });
});
