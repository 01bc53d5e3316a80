/**
 * The dashboard's data shaping (shared/londiste/status-view.ts) on fixed
 * inputs: status replies, state changes, copy progress, pings and tick
 * notices in, the page's view out.
 */
import { describe, expect, it } from "vitest";
import {
  applyCopyProgress,
  applyPings,
  applyStateChange,
  applyStatus,
  applyStatusProblem,
  applyTick,
  applyTicker,
  copyView,
  dashboardView,
  emptyModel,
  fixCommands,
  HISTORY_PER_TABLE,
  hostOf,
  humanSeconds,
  LAG_WINDOW_MS,
  lagText,
  noteJob,
  pathText,
  placeInMachine,
  SERVICE_GONE_MS,
  type StatusReply,
  type StateChange,
  stateName,
  type CopyProgress,
} from "../../shared/londiste/status-view.ts";

const T0 = Date.parse("2026-12-05T10:00:00Z");

function status(over: Partial<StatusReply> = {}): StatusReply {
  return {
    job: "j",
    queue: "q",
    lag_s: 1.5,
    last_tick: 10,
    pending_events: 3,
    ticker_warning: null,
    registered: true,
    tables: [{ table: "public.a", state: "ok", error: null }],
    ...over,
  };
}

let nextId = 1;
function change(table: string, from: string | null, to: string | null, type: string, time: string, extra: Record<string, unknown> = {}): StateChange {
  return { job: "j", table, from, to, event: { type, actor: "copy", ...extra }, id: nextId++, time };
}

function progress(over: Partial<CopyProgress> = {}): CopyProgress {
  return {
    table: "public.b",
    worker: "host:1:abc",
    phase: "copying",
    rows: 250,
    bytes: 10_000,
    elapsed_s: 2,
    rows_per_s: 125,
    mb_per_s: 2.345,
    estimated_rows: 1000,
    eta_s: 6,
    time: new Date(T0).toISOString(),
    ...over,
  };
}

describe("status view", () => {
  it("keeps one lag point per status reply, only of the last hour, and describes them in text", () => {
    const m = emptyModel();
    applyStatus(m, "j", status({ lag_s: 5 }), T0);
    applyStatus(m, "j", status({ lag_s: 0.5 }), T0 + 30 * 60_000);
    applyStatus(m, "j", status({ lag_s: null }), T0 + 40 * 60_000); // no lag known: no point
    applyStatus(m, "j", status({ lag_s: 2 }), T0 + 61 * 60_000);
    const v = dashboardView(m, T0 + 61 * 60_000).jobs[0]!;
    expect(v.lag).toEqual([
      [(T0 + 30 * 60_000) / 1000, 0.5],
      [(T0 + 61 * 60_000) / 1000, 2],
    ]);
    expect(v.lagNow).toBe(2);
    expect(v.lagText).toBe("lag now 2.0 s; over the last 31 min least 0.5 s, most 2.0 s (2 points)");
    expect(lagText([], null)).toBe("no lag measured yet");
    expect(lagText([], 3)).toBe("lag now 3.0 s");
    expect(LAG_WINDOW_MS).toBe(3_600_000);
  });

  it("a table's path, place in the machine and time of its last transition come from the stream; a repeated change counts once", () => {
    const m = emptyModel();
    noteJob(m, "j");
    const steps = [
      change("public.a", null, null, "ADDED", "2026-12-05T10:00:00Z"),
      change("public.a", null, "in-copy", "COPY.REQUESTED", "2026-12-05T10:00:01Z"),
      change("public.a", "in-copy", "catching-up", "COPY.DONE", "2026-12-05T10:00:05Z"),
      change("public.a", "catching-up", "wanna-sync:42", "COPY.CAUGHT_UP", "2026-12-05T10:00:06Z"),
    ];
    for (const c of steps) applyStateChange(m, c);
    applyStateChange(m, steps[2]!); // redelivered: ignored
    let t = dashboardView(m, T0).jobs[0]!.tables[0]!;
    expect(t).toMatchObject({ table: "public.a", state: "wanna-sync", place: "step 4 of 6", since: "2026-12-05T10:00:06Z", copy: null, error: null });
    expect(t.path).toBe("none → in-copy → catching-up → wanna-sync");
    applyStateChange(m, change("public.a", "wanna-sync:42", "do-sync:42", "REPLAY.REACHED", "2026-12-05T10:00:07Z"));
    applyStateChange(m, change("public.a", "do-sync:42", "ok", "COPY.FINISHED", "2026-12-05T10:00:08Z"));
    t = dashboardView(m, T0).jobs[0]!.tables[0]!;
    expect(t).toMatchObject({ state: "ok", place: "step 6 of 6", since: "2026-12-05T10:00:08Z" });
    expect(t.path).toBe("none → in-copy → catching-up → wanna-sync → do-sync → ok");

    // Only the last transitions are kept.
    for (let i = 0; i < HISTORY_PER_TABLE + 5; i++) applyStateChange(m, change("public.a", "ok", "ok", "NOOP", "2026-12-05T10:01:00Z"));
    expect(dashboardView(m, T0).jobs[0]!.tables[0]!.path).toBe("ok");
    // Removed: gone from the view.
    applyStateChange(m, change("public.a", "ok", "removed", "REMOVE", "2026-12-05T10:02:00Z"));
    expect(dashboardView(m, T0).jobs[0]!.tables).toEqual([]);
  });

  it("an error shows its message and the commands that fix it, with the dashboard's config for its own job", () => {
    const m = emptyModel();
    applyStateChange(m, change("public.e", "ok", "error", "FAIL", "2026-12-05T10:00:00Z", { message: "row has 3 values for 2 columns" }));
    const own = dashboardView(m, T0, "j", "/etc/skytools/j.ini").jobs[0]!;
    expect(own.errors).toBe(1);
    expect(own.tables[0]).toMatchObject({
      state: "error",
      place: "stopped: waits for repair --apply or resync",
      error: {
        message: "row has 3 values for 2 columns",
        fix: ["londiste /etc/skytools/j.ini repair public.e --apply", "londiste /etc/skytools/j.ini subscriber resync public.e"],
      },
    });
    // Another job's page does not know its config path.
    expect(dashboardView(m, T0, "other", "/etc/x.ini").jobs[0]!.tables[0]!.error!.fix[0]).toBe("londiste CONF repair public.e --apply");
    // The status reply's error text counts too (a table already in error when the page started).
    const m2 = emptyModel();
    applyStatus(m2, "j", status({ tables: [{ table: "public.e", state: "error", error: "boom" }] }), T0);
    expect(dashboardView(m2, T0).jobs[0]!.tables[0]!.error!.message).toBe("boom");
    // Resynced: the error is gone.
    applyStateChange(m, change("public.e", "error", null, "RESYNC", "2026-12-05T10:01:00Z"));
    expect(dashboardView(m, T0).jobs[0]!.tables[0]!.error).toBeNull();
  });

  it("copies become progress bars with rows, MB/s and ETA; a stale or finished one goes away", () => {
    const m = emptyModel();
    applyStatus(m, "j", status({ tables: [{ table: "public.b", state: "in-copy", error: null }] }), T0);
    applyCopyProgress(m, "j", progress(), T0);
    const copy = dashboardView(m, T0 + 1000).jobs[0]!.tables[0]!.copy!;
    expect(copy).toEqual({ rows: 250, estimatedRows: 1000, percent: 25, mbPerS: 2.345, etaS: 6, worker: "host:1:abc", text: "250 rows of about 1000 at 2.3 MB/s, about 6.0 s left" });
    expect(copyView(progress({ estimated_rows: null, eta_s: null })).percent).toBeNull();
    expect(copyView(progress({ estimated_rows: 100, rows: 150 })).percent).toBe(100);
    expect(copyView(progress({ phase: "done", estimated_rows: null })).text).toBe("250 rows at 2.3 MB/s, done");
    // In ok the copy is over whatever the last report said.
    applyStatus(m, "j", status({ tables: [{ table: "public.b", state: "ok", error: null }] }), T0 + 60_000);
    expect(dashboardView(m, T0 + 61_000).jobs[0]!.tables[0]!.copy).toBeNull();
  });

  it("services from ping: role, host and instance; one that stopped answering is dropped", () => {
    const m = emptyModel();
    applyPings(m, "j", [
      { instance: "db1-100", service: "replay", role: "active", version: "0.1.0" },
      { instance: "db2-200", service: "replay", role: "standby", version: "0.1.0" },
      { instance: "db1-300", service: "copy", copies: ["public.b"], version: "0.1.0" },
      { instance: "db3-400", service: "repair", running: 0, version: "0.1.0" },
    ], T0);
    expect(dashboardView(m, T0).jobs[0]!.services).toEqual([
      { service: "copy", role: "copying public.b", host: "db1", instance: "db1-300", version: "0.1.0" },
      { service: "repair", role: "running", host: "db3", instance: "db3-400", version: "0.1.0" },
      { service: "replay", role: "active", host: "db1", instance: "db1-100", version: "0.1.0" },
      { service: "replay", role: "standby", host: "db2", instance: "db2-200", version: "0.1.0" },
    ]);
    applyPings(m, "j", [{ instance: "db1-100", service: "replay", role: "active" }], T0 + SERVICE_GONE_MS + 1);
    expect(dashboardView(m, T0).jobs[0]!.services.map((s) => s.instance)).toEqual(["db1-100"]);
    expect(hostOf("my-host-name-4242")).toBe("my-host-name");
  });

  it("the tickers of the job's queue are among its services; another queue's are not", () => {
    const m = emptyModel();
    applyStatus(m, "j", status(), T0);
    applyTicker(m, "t1", ["q", "other"], [{ instance: "db1-10", state: "active", version: "0.1.0" }, { instance: "db2-20", state: "standby", version: "0.1.0" }], T0);
    applyTicker(m, "t2", ["elsewhere"], [{ instance: "db9-90", state: "active", version: "0.1.0" }], T0);
    expect(dashboardView(m, T0).jobs[0]!.services).toEqual([
      { service: "ticker", role: "active", host: "db1", instance: "db1-10", version: "0.1.0" },
      { service: "ticker", role: "standby", host: "db2", instance: "db2-20", version: "0.1.0" },
    ]);
    // A failed status keeps the known queues; a ticker that stopped answering goes.
    applyTicker(m, "t1", undefined, [{ instance: "db1-10", state: "active" }], T0 + SERVICE_GONE_MS + 1);
    expect(dashboardView(m, T0).jobs[0]!.services.map((s) => s.instance)).toEqual(["db1-10"]);
  });

  it("tick notices reach the jobs of their queue; status problems and ticker warnings are shown", () => {
    const m = emptyModel();
    applyStatus(m, "j", status({ ticker_warning: "the ticker is 30 s late" }), T0);
    applyStatus(m, "k", status({ job: "k", queue: "other" }), T0);
    applyTick(m, { queue: "q", tick_id: 77, time: "2026-12-05T10:00:01Z" });
    const [j, k] = dashboardView(m, T0).jobs;
    expect(j!.lastTick).toEqual({ id: 77, time: "2026-12-05T10:00:01Z" });
    expect(k!.lastTick).toBeNull();
    expect(j!.warnings).toEqual(["the ticker is 30 s late"]);
    applyStatusProblem(m, "k", "no replay of the job answers on p.londiste.k.status", T0);
    expect(dashboardView(m, T0).jobs[1]!.warnings).toEqual(["status: no replay of the job answers on p.londiste.k.status"]);
  });

  it("a table the status reply no longer lists left the set, unless the stream changed it just now", () => {
    const m = emptyModel();
    applyStatus(m, "j", status({ tables: [{ table: "public.a", state: "ok", error: null }, { table: "public.x", state: "ok", error: null }] }), T0);
    applyStateChange(m, change("public.new", null, "in-copy", "COPY.REQUESTED", new Date(T0 + 1000).toISOString()));
    applyStatus(m, "j", status({ tables: [{ table: "public.a", state: "ok", error: null }] }), T0 + 2000);
    expect(dashboardView(m, T0 + 2000).jobs[0]!.tables.map((t) => t.table)).toEqual(["public.a", "public.new"]);
  });

  it("small helpers", () => {
    expect(stateName(null)).toBe("none");
    expect(stateName("do-sync:12")).toBe("do-sync");
    expect(placeInMachine(null)).toBe("step 1 of 6");
    expect(placeInMachine("removed")).toBe("removed");
    expect(humanSeconds(null)).toBe("-");
    expect(humanSeconds(42.4)).toBe("42 s");
    expect(humanSeconds(185)).toBe("3 min 5 s");
    expect(humanSeconds(7800)).toBe("2 h 10 min");
    expect(pathText([])).toBe("");
    expect(fixCommands("c.ini", "s.t")).toEqual(["londiste c.ini repair s.t --apply", "londiste c.ini subscriber resync s.t"]);
  });
});
