// The dashboard page: renders the view the server pushes over server-sent
// events (/api/events); the data is already shaped (shared/londiste/status-view.ts),
// so this only builds DOM. Every text goes in through textContent, never as HTML:
// table names and error messages come from the databases.
"use strict";

const charts = new Map();

/** An element with attributes and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return el;
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 10) return `${Math.max(0, s).toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function localTime(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleTimeString());
}

function anchor(job) {
  return `job-${job.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

function overviewRow(job) {
  const copying = job.tables.filter((t) => t.copy).length;
  return h(
    "tr",
    { "data-job": job.job },
    h("th", { scope: "row" }, h("a", { href: `#${anchor(job.job)}` }, job.job)),
    h("td", {}, job.queue || "-"),
    h("td", {}, seconds(job.lagNow)),
    h("td", {}, String(job.tables.length)),
    h("td", {}, String(copying)),
    h("td", { class: job.errors > 0 ? "state-error" : "" }, String(job.errors)),
    h("td", {}, String(job.services.length)),
  );
}

function tablesTable(job) {
  if (job.tables.length === 0) return h("p", {}, "No tables in the set yet.");
  return h(
    "table",
    { class: "tables" },
    h("caption", {}, `Tables of job ${job.job}: state, place in the sync machine, last transition`),
    h(
      "thead",
      {},
      h("tr", {}, ...["Table", "State", "Place in the sync machine", "Last transition", "Path"].map((c) => h("th", { scope: "col" }, c))),
    ),
    h(
      "tbody",
      {},
      ...job.tables.map((t) =>
        h(
          "tr",
          { "data-table": t.table },
          h("th", { scope: "row" }, t.table),
          h("td", { class: `state state-${t.state}`, "data-state": t.state }, t.state),
          h("td", {}, t.place),
          h("td", {}, localTime(t.since)),
          h("td", { class: "path" }, t.path || "-"),
        ),
      ),
    ),
  );
}

function copies(job) {
  const copying = job.tables.filter((t) => t.copy);
  if (copying.length === 0) return null;
  return h(
    "div",
    { class: "copies" },
    h("h3", {}, "Copies"),
    ...copying.map((t) => {
      const label = `${t.table}: ${t.copy.text}`;
      return h(
        "div",
        { class: "copy", "data-copy": t.table },
        h("span", {}, t.table),
        h(
          "div",
          {},
          h("progress", { max: "100", value: t.copy.percent === null ? undefined : String(t.copy.percent), "aria-label": label }),
          h("div", { class: "copy-text" }, `${t.copy.percent === null ? "" : `${t.copy.percent}%: `}${t.copy.text} (${t.copy.worker})`),
        ),
      );
    }),
  );
}

function errors(job) {
  const failed = job.tables.filter((t) => t.error);
  if (failed.length === 0) return null;
  return h(
    "div",
    { class: "errors" },
    h("h3", {}, "Errors"),
    h(
      "ul",
      {},
      ...failed.map((t) =>
        h(
          "li",
          { "data-error": t.table },
          h("strong", {}, t.table),
          ": ",
          h("span", { class: "error-message" }, t.error.message),
          h("div", {}, "Fix: ", ...t.error.fix.flatMap((cmd, i) => [i > 0 ? " or " : "", h("code", {}, cmd)])),
        ),
      ),
    ),
  );
}

function services(job) {
  if (job.services.length === 0) return h("p", { class: "warning" }, "No service of this job answers ping.");
  return h(
    "table",
    { class: "services" },
    h("caption", {}, `Services of job ${job.job} that answer`),
    h("thead", {}, h("tr", {}, ...["Service", "Role", "Host", "Instance", "Version"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...job.services.map((s) =>
        h("tr", { "data-instance": s.instance }, h("th", { scope: "row" }, s.service), h("td", {}, s.role), h("td", {}, s.host), h("td", {}, s.instance), h("td", {}, s.version)),
      ),
    ),
  );
}

/** The lag chart: kept across updates (uPlot redraws its data), with its text alternative beside it. */
function lagChart(job, holder) {
  let entry = charts.get(job.job);
  if (!entry) {
    const el = h("div", { class: "chart", role: "img" });
    const text = h("p", { class: "chart-text" });
    const figure = h("figure", {}, el, h("figcaption", {}, text));
    entry = { figure, el, text, plot: null };
    charts.set(job.job, entry);
  }
  const xs = job.lag.map((p) => p[0]);
  const ys = job.lag.map((p) => p[1]);
  entry.el.setAttribute("aria-label", `Lag of job ${job.job} over the last hour: ${job.lagText}`);
  entry.el.dataset.points = String(xs.length);
  entry.text.textContent = job.lagText;
  holder.append(entry.figure);
  const width = Math.max(300, holder.clientWidth || 800);
  if (!entry.plot && typeof uPlot === "function") {
    entry.plot = new uPlot(
      {
        width,
        height: 200,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        // The caption under the chart says what the legend would; the axis names the series.
        legend: { show: false },
        axes: [{}, { label: "lag (s)" }],
        series: [{}, { label: "lag (s)", stroke: "#0969da", fill: "rgba(9,105,218,0.1)", width: 2, points: { show: xs.length < 60 } }],
      },
      [xs, ys],
      entry.el,
    );
  } else if (entry.plot) {
    if (entry.plot.width !== width) entry.plot.setSize({ width, height: 200 });
    entry.plot.setData([xs, ys]);
  }
}

function jobSection(job) {
  const id = anchor(job.job);
  const section = h("section", { class: "job", id, "aria-labelledby": `${id}-title`, "data-job": job.job });
  section.append(
    h("h2", { id: `${id}-title` }, `Job ${job.job}`),
    h(
      "dl",
      { class: "facts" },
      h("div", {}, h("dt", {}, "Queue"), h("dd", {}, job.queue || "-")),
      h("div", {}, h("dt", {}, "Lag"), h("dd", { "data-lag": "" }, seconds(job.lagNow))),
      h("div", {}, h("dt", {}, "Pending events"), h("dd", {}, job.pending === null ? "-" : String(job.pending))),
      h("div", {}, h("dt", {}, "Last tick"), h("dd", {}, job.lastTick ? [String(job.lastTick.id), " at ", localTime(job.lastTick.time)] : "-")),
    ),
    ...job.warnings.map((w) => h("p", { class: "warning" }, w)),
    h("h3", {}, "Lag, last hour"),
  );
  const chartHolder = h("div", {});
  section.append(chartHolder);
  return { section, chartHolder };
}

function render(view) {
  const tbody = document.querySelector("#jobs-table tbody");
  tbody.replaceChildren(...view.jobs.map(overviewRow));
  const container = document.getElementById("jobs");
  const sections = view.jobs.map((job) => {
    const { section, chartHolder } = jobSection(job);
    section.append(
      ...[h("h3", {}, "Tables"), tablesTable(job), copies(job), errors(job), h("h3", {}, "Services"), services(job)].filter(Boolean),
    );
    return { job, section, chartHolder };
  });
  container.replaceChildren(...sections.map((s) => s.section));
  // Charts after the sections are in the page, so they know their width.
  for (const s of sections) lagChart(s.job, s.chartHolder);
  document.body.dataset.updated = view.generatedAt;
}

function connect() {
  const status = document.getElementById("connection");
  const events = new EventSource("/api/events");
  events.addEventListener("view", (e) => {
    // Said once per change of connection, not per update: the status is a live region.
    if (status.className !== "live") status.textContent = "live";
    status.className = "live";
    render(JSON.parse(e.data));
  });
  events.addEventListener("error", () => {
    status.textContent = "connection to the dashboard lost; reconnecting…";
    status.className = "down";
  });
}

connect();
