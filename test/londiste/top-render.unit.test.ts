/**
 * `londiste CONF top` without NATS or a terminal: the state it gathers
 * from fixed inputs (status replies, state changes, copy progress, ticks,
 * pings) shaped into its view (top-state.ts) and drawn as lines
 * (top-render.ts).
 */
import { describe, expect, it } from "vitest";
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";
import { progressBar, renderTop, sparkline } from "../../services/londiste/top-render.ts";
import {
  initialState,
  LAG_HISTORY_MS,
  recordCopyProgress,
  recordServices,
  recordStatus,
  recordStatusProblem,
  recordTick,
  recordTransition,
  shapeView,
  STALE_COPY_MS,
  type StatusReply,
} from "../../services/londiste/top-state.ts";

const T0 = Date.parse("2026-12-05T10:00:00Z");
const FIX = { londiste: "londiste job.ini" };

function status(over: Partial<StatusReply> = {}): StatusReply {
  return {
    job: "myjob",
    queue: "replika",
    registered: true,
    lag_s: 1.5,
    last_tick: 120,
    subscriber_tick: 119,
    pending_events: 42,
    ticker_warning: null,
    replay: { instance: "db1-100", role: "active", batches: 7, changes: 900, lastError: null },
    tables: [
      { table: "public.orders", state: "ok", error: null, copy_worker: null, copy_progress: null },
      { table: "public.items", state: "in-copy", error: null, copy_worker: "db2-200", copy_progress: null },
    ],
    ...over,
  };
}

function change(table: string, from: string | null, to: string | null, id: number, time: number, event: Record<string, unknown>): StateChangeMessage {
  return { job: "myjob", queue: "replika", table, from, to, event, version: id, id, time: new Date(time).toISOString() };
}

describe("sparkline and progress bar", () => {
  it("scales samples to the highest, one block each, the last `width`", () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8)).toBe("▁▂▃▄▅▆▇█");
    expect(sparkline([0, 7, 7], 2)).toBe("██");
    expect(sparkline([0, 0], 5)).toBe("▁▁");
    expect(sparkline([], 5)).toBe("");
  });

  it("fills the bar to the fraction, and says when the size is unknown", () => {
    expect(progressBar(0.5, 10)).toBe("[#####-----]");
    expect(progressBar(1.7, 4)).toBe("[####]");
    expect(progressBar(null, 3)).toBe("[???]");
  });
});

describe("shaping the gathered state", () => {
  it("keeps the lag of the last hour only", () => {
    const s = initialState("myjob", "replika");
    recordStatus(s, status({ lag_s: 9 }), T0);
    recordStatus(s, status({ lag_s: 2 }), T0 + LAG_HISTORY_MS - 1000);
    recordStatus(s, status({ lag_s: 3 }), T0 + LAG_HISTORY_MS + 1000);
    const view = shapeView(s, T0 + LAG_HISTORY_MS + 1000, FIX);
    expect(view.lagHistory).toEqual([2, 3]);
    expect(view.lagS).toBe(3);
  });

  it("takes a table's state from the newer of the status reply and the last transition", () => {
    const s = initialState("myjob", "replika");
    recordStatus(s, status(), T0);
    // After the status: the live change wins.
    recordTransition(s, change("public.items", "in-copy", "catching-up", 5, T0 + 500, { type: "COPY.DONE", actor: "copy" }));
    // Before it: the status wins.
    recordTransition(s, change("public.orders", "do-sync", "wanna-sync", 3, T0 - 5000, { type: "X", actor: "replay" }));
    const view = shapeView(s, T0 + 2500, FIX);
    expect(view.tables.map((t) => [t.table, t.state, t.lastEvent, t.sinceS])).toEqual([
      ["public.items", "catching-up", "COPY.DONE by copy", 2],
      ["public.orders", "ok", "X by replay", 7.5],
    ]);
  });

  it("ignores an older change arriving late and forgets removed tables", () => {
    const s = initialState("myjob", "replika");
    recordTransition(s, change("public.t", "in-copy", "catching-up", 9, T0, { type: "COPY.DONE" }));
    recordTransition(s, change("public.t", null, "in-copy", 8, T0 - 1000, { type: "COPY.START" }));
    expect(shapeView(s, T0, FIX).tables.map((t) => t.state)).toEqual(["catching-up"]);
    recordTransition(s, change("public.t", "ok", "removed", 10, T0, { type: "REMOVED" }));
    expect(shapeView(s, T0, FIX).tables).toEqual([]);
  });

  it("makes a copy row from the newest progress report, stale when reports stop", () => {
    const s = initialState("myjob", "replika");
    recordStatus(s, status(), T0);
    recordCopyProgress(s, { table: "public.items", worker: "db2-200", phase: "copying", rows: 250, estimated_rows: 1000, mb_per_s: 12.34, eta_s: 30 }, T0);
    const fresh = shapeView(s, T0 + 1000, FIX).copies;
    expect(fresh).toEqual([
      { table: "public.items", worker: "db2-200", rows: 250, estimatedRows: 1000, fraction: 0.25, mbPerS: 12.34, etaS: 30, stale: false },
    ]);
    expect(shapeView(s, T0 + STALE_COPY_MS + 1, FIX).copies[0]!.stale).toBe(true);
  });

  it("lists tables in error with their message and the commands that fix them, and the job's own problems", () => {
    const s = initialState("myjob", "replika");
    recordStatus(
      s,
      status({
        registered: false,
        ticker_warning: "no tick for 5m",
        replay: { instance: "db1-100", role: "active", lastError: "connection refused" },
        tables: [{ table: "public.bad", state: "error", error: null, copy_worker: null, copy_progress: null }],
      }),
      T0 - 1000,
    );
    recordTransition(s, change("public.bad", "ok", "error", 4, T0 - 2000, { type: "FAIL", actor: "replay", message: 'duplicate key "k"\nDETAIL: x' }));
    const view = shapeView(s, T0, FIX);
    expect(view.errors).toEqual([
      {
        table: "public.bad",
        message: 'duplicate key "k"\nDETAIL: x',
        fix: "londiste job.ini repair public.bad --apply   (or: londiste job.ini subscriber resync public.bad)",
      },
      { table: null, message: "replay: connection refused", fix: null },
      { table: null, message: "ticker: no tick for 5m", fix: null },
      { table: null, message: "replay's consumer is not registered on the provider queue", fix: "londiste job.ini subscriber register" },
    ]);
  });
});

describe("rendering", () => {
  function fullState() {
    const s = initialState("myjob", "replika");
    for (const [i, lag] of [0.5, 1, 4, 2].entries()) recordStatus(s, status({ lag_s: lag }), T0 + i * 2000);
    recordTick(s, 120, T0 + 5000);
    recordServices(s, [
      { instance: "db2-200", service: "copy" },
      { instance: "db1-100", service: "replay", role: "active" },
    ]);
    recordCopyProgress(s, { table: "public.items", worker: "db2-200", phase: "copying", rows: 500, estimated_rows: 1000, mb_per_s: 3.25, eta_s: 12 }, T0 + 6000);
    return s;
  }

  it("draws the header, the tables, the copy bar and errors on fixed inputs", () => {
    const s = fullState();
    recordTransition(s, change("public.orders", "ok", "error", 11, T0 + 6500, { type: "FAIL", actor: "replay", message: "bad row\nDETAIL: key 1" }));
    const lines = renderTop(shapeView(s, T0 + 7000, FIX), { keys: true });
    expect(lines).toEqual([
      "londiste top: job myjob, queue replika    (q quits)",
      "lag 2.0s  ▂▃█▅  (last 7.0s, max 4.0s)",
      "provider tick 120, subscriber tick 119, pending events 42, last tick notice #120 2.0s ago",
      "replay db1-100: active, 7 batches, 900 changes since start",
      "services: copy db2-200, replay db1-100 (active)",
      "",
      "TABLE          STATE    SINCE  LAST CHANGE",
      "public.items   in-copy  -      -",
      "public.orders  error    0.5s   FAIL by replay",
      "",
      "COPIES",
      "public.items  [############------------]  50%  500 / ~1000 rows  3.3 MB/s  ETA 12s  (db2-200)",
      "",
      "ERRORS",
      "public.orders: bad row | DETAIL: key 1",
      "  fix: londiste job.ini repair public.orders --apply   (or: londiste job.ini subscriber resync public.orders)",
    ]);
  });

  it("says when replay does not answer and nothing is known yet", () => {
    const s = initialState("myjob", "replika");
    recordStatusProblem(s, "no replay service of the job is running");
    s.connected = false;
    expect(renderTop(shapeView(s, T0, FIX))).toEqual([
      "londiste top: job myjob, queue replika",
      "NATS connection lost: reconnecting; the figures below are from before",
      "replay does not answer: no replay service of the job is running",
      "lag -",
      "provider tick -, subscriber tick -, pending events -, no tick notice yet",
      "services: none answered",
      "",
      "(no tables)",
    ]);
  });

  it("fits a small window: lines cut to its width, the table list cut to its height", () => {
    const s = fullState();
    const many = status({
      tables: Array.from({ length: 30 }, (_, i) => ({ table: `public.t${String(i).padStart(2, "0")}`, state: "ok", error: null, copy_worker: null, copy_progress: null })),
    });
    recordStatus(s, many, T0 + 7000);
    const lines = renderTop(shapeView(s, T0 + 7000, FIX), { width: 40, height: 12 });
    expect(lines).toHaveLength(12);
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(40);
    expect(lines[6]).toMatch(/^TABLE/);
    expect(lines.some((l) => /^\.\.\. \d+ more lines/.test(l))).toBe(true);
  });
});
