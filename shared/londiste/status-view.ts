/**
 * What a watcher of replication sees, shaped from what NATS carries: the
 * replies to `status` and `ping`, the table state changes of the job's
 * JetStream stream, copy progress and tick notices. Pure: the dashboard
 * (services/dashboard/) feeds messages in and renders the views; nothing
 * here does I/O or reads the clock (every function takes `now`).
 *
 * The model keeps per job: the lag of the last hour (one point per status
 * reply), each table's state with the time and path of its last
 * transitions, the last copy progress per table, the services that
 * answered the last ping (the tickers of the job's queue among them), and
 * the last tick of the job's queue.
 */

/** How much lag history is kept and shown. */
export const LAG_WINDOW_MS = 60 * 60 * 1000;
/** Transitions remembered per table (the page shows the path a table took). */
export const HISTORY_PER_TABLE = 12;
/** A copy progress report older than this, with no newer one, is stale (the worker stopped reporting). */
export const PROGRESS_STALE_MS = 30_000;
/** A service that missed pings for this long is dropped from the list. */
export const SERVICE_GONE_MS = 30_000;
/** A table the stream changed this recently is kept though a status reply did not list it (the reply may be older). */
const UNLISTED_GRACE_MS = 10_000;

/** The sync machine's way to `ok`, in order (docs/table-sync-machine.md). */
export const SYNC_STEPS = ["none", "in-copy", "catching-up", "wanna-sync", "do-sync", "ok"] as const;

/** The `status` reply of a job's replay, the fields used here. */
export interface StatusReply {
  job: string;
  queue: string;
  lag_s: number | null;
  last_tick: number | null;
  pending_events: number | null;
  ticker_warning: string | null;
  registered: boolean;
  replay?: { instance?: string; role?: string; lastError?: string | null };
  tables: Array<{ table: string; state: string | null; dest_table?: string | null; error: string | null; copy_worker?: string | null }>;
}

/** A `ping` reply: every service of the job answers. */
export interface PingReply {
  instance: string;
  /** replay, copy or repair; the ticker says none. */
  service?: string;
  /** replay: active, standby or starting. */
  role?: string;
  /** ticker: its loop state. */
  state?: string;
  version?: string;
  copies?: string[];
  running?: number;
}

export interface CopyProgress {
  table: string;
  worker: string;
  phase: "copying" | "done";
  rows: number;
  bytes: number;
  elapsed_s: number;
  rows_per_s: number;
  mb_per_s: number;
  estimated_rows: number | null;
  eta_s: number | null;
  time: string;
}

export interface StateChange {
  job: string;
  table: string;
  from: string | null;
  to: string | null;
  event: Record<string, unknown>;
  id: number;
  time: string;
}

export interface TickNotice {
  queue: string;
  tick_id: number;
  time: string;
}

interface TableModel {
  state: string | null;
  error: string | null;
  /** Time of the last transition seen on the stream (ISO), if any. */
  since: string | null;
  /** The last transitions, oldest first. */
  history: Array<{ from: string | null; to: string | null; event: string; time: string }>;
  /** Highest outbox id applied: a change replayed from the stream twice is applied once. */
  lastId: number;
  progress: CopyProgress | null;
  progressAt: number;
  /** Whether the last status reply listed it (a table seen only on the stream may be gone). */
  listed: boolean;
}

interface JobModel {
  job: string;
  queue: string | null;
  lag: Array<[number, number]>;
  lagNow: number | null;
  pending: number | null;
  tickerWarning: string | null;
  registered: boolean | null;
  statusAt: number | null;
  /** Why the last status request failed, if it did. */
  statusProblem: string | null;
  lastTick: { id: number; time: string } | null;
  tables: Map<string, TableModel>;
  services: Map<string, { reply: PingReply; seen: number }>;
}

/** A ticker job (pgqadm): the queues of its database and its instances. */
interface TickerModel {
  queues: string[];
  services: Map<string, { reply: PingReply; seen: number }>;
}

export interface DashboardModel {
  jobs: Map<string, JobModel>;
  tickers: Map<string, TickerModel>;
}

export function emptyModel(): DashboardModel {
  return { jobs: new Map(), tickers: new Map() };
}

function jobOf(model: DashboardModel, job: string): JobModel {
  let j = model.jobs.get(job);
  if (!j) {
    j = {
      job,
      queue: null,
      lag: [],
      lagNow: null,
      pending: null,
      tickerWarning: null,
      registered: null,
      statusAt: null,
      statusProblem: null,
      lastTick: null,
      tables: new Map(),
      services: new Map(),
    };
    model.jobs.set(job, j);
  }
  return j;
}

function tableOf(j: JobModel, table: string): TableModel {
  let t = j.tables.get(table);
  if (!t) {
    t = { state: null, error: null, since: null, history: [], lastId: 0, progress: null, progressAt: 0, listed: false };
    j.tables.set(table, t);
  }
  return t;
}

/** Notes that a job exists (found by discovery) before anything else about it arrived. */
export function noteJob(model: DashboardModel, job: string): void {
  jobOf(model, job);
}

/** A status reply: the lag point, the queue, each table's state and error. */
export function applyStatus(model: DashboardModel, job: string, status: StatusReply, now: number): void {
  const j = jobOf(model, job);
  j.queue = status.queue;
  j.statusAt = now;
  j.statusProblem = null;
  j.lagNow = status.lag_s;
  j.pending = status.pending_events;
  j.tickerWarning = status.ticker_warning;
  j.registered = status.registered;
  if (status.lag_s !== null) j.lag.push([now, status.lag_s]);
  trimLag(j, now);
  for (const t of j.tables.values()) t.listed = false;
  for (const row of status.tables) {
    const t = tableOf(j, row.table);
    t.state = row.state;
    t.error = row.error;
    t.listed = true;
  }
  // A table the reply does not list left the set; one the stream changed just now may be newer than the reply.
  for (const [name, t] of j.tables) {
    if (!t.listed && (t.since === null || Date.parse(t.since) < now - UNLISTED_GRACE_MS)) j.tables.delete(name);
  }
}

/** The status request failed (no replay answers, refused, timed out): said on the page. */
export function applyStatusProblem(model: DashboardModel, job: string, problem: string, now: number): void {
  const j = jobOf(model, job);
  j.statusProblem = problem;
  trimLag(j, now);
}

function trimLag(j: JobModel, now: number): void {
  const from = now - LAG_WINDOW_MS;
  let drop = 0;
  while (drop < j.lag.length && j.lag[drop]![0] < from) drop++;
  if (drop > 0) j.lag.splice(0, drop);
}

/** A state change from the job's stream. */
export function applyStateChange(model: DashboardModel, change: StateChange): void {
  const j = jobOf(model, change.job);
  const t = tableOf(j, change.table);
  if (change.id <= t.lastId) return;
  t.lastId = change.id;
  t.since = change.time;
  t.state = change.to;
  const event = typeof change.event.type === "string" ? change.event.type : "?";
  if (event === "FAIL" && typeof change.event.message === "string") t.error = change.event.message;
  else if (change.to !== "error") t.error = null;
  t.history.push({ from: change.from, to: change.to, event, time: change.time });
  if (t.history.length > HISTORY_PER_TABLE) t.history.splice(0, t.history.length - HISTORY_PER_TABLE);
  if (change.to === "removed") j.tables.delete(change.table);
}

export function applyCopyProgress(model: DashboardModel, job: string, progress: CopyProgress, now: number): void {
  const t = tableOf(jobOf(model, job), progress.table);
  t.progress = progress;
  t.progressAt = now;
}

/** The replies to one `ping` of the job: who answered now. */
export function applyPings(model: DashboardModel, job: string, replies: PingReply[], now: number): void {
  const j = jobOf(model, job);
  for (const reply of replies) j.services.set(reply.instance, { reply, seen: now });
  for (const [instance, s] of j.services) if (now - s.seen > SERVICE_GONE_MS) j.services.delete(instance);
}

/**
 * A ticker job's `status` queues and `ping` replies: its instances are
 * listed among the services of every job replaying one of those queues.
 * (Queues are known by name only: two provider databases with a queue of
 * the same name under one prefix would both claim the job's ticker.)
 */
export function applyTicker(model: DashboardModel, tickerJob: string, queues: string[] | undefined, replies: PingReply[], now: number): void {
  let t = model.tickers.get(tickerJob);
  if (!t) {
    t = { queues: [], services: new Map() };
    model.tickers.set(tickerJob, t);
  }
  if (queues) t.queues = queues;
  for (const reply of replies) t.services.set(reply.instance, { reply: { ...reply, service: "ticker" }, seen: now });
  for (const [instance, s] of t.services) if (now - s.seen > SERVICE_GONE_MS) t.services.delete(instance);
}

/** A tick notice of a queue: every job replaying that queue. */
export function applyTick(model: DashboardModel, notice: TickNotice): void {
  for (const j of model.jobs.values()) if (j.queue === notice.queue) j.lastTick = { id: notice.tick_id, time: notice.time };
}

// ------------------------------------------------------------------ views

export interface CopyView {
  rows: number;
  estimatedRows: number | null;
  /** 0..100, null when the table's size is unknown. */
  percent: number | null;
  mbPerS: number;
  etaS: number | null;
  worker: string;
  text: string;
}

export interface TableView {
  table: string;
  state: string;
  /** Where the state stands on the way to ok, e.g. "step 2 of 6 (in-copy)", or "stopped". */
  place: string;
  since: string | null;
  path: string;
  copy: CopyView | null;
  error: { message: string; fix: string[] } | null;
}

export interface ServiceView {
  service: string;
  role: string;
  host: string;
  instance: string;
  version: string;
}

export interface JobView {
  job: string;
  queue: string | null;
  lagNow: number | null;
  /** [epoch seconds, lag seconds] of the last hour, oldest first. */
  lag: Array<[number, number]>;
  lagText: string;
  pending: number | null;
  lastTick: { id: number; time: string } | null;
  warnings: string[];
  tables: TableView[];
  services: ServiceView[];
  errors: number;
}

export interface DashboardView {
  generatedAt: string;
  jobs: JobView[];
}

/** The merge_state text without its tick (`wanna-sync:42` → wanna-sync); null is (none). */
export function stateName(state: string | null): string {
  if (state === null) return "none";
  return state.split(":")[0]!;
}

export function placeInMachine(state: string | null): string {
  const name = stateName(state);
  if (name === "error") return "stopped: waits for repair --apply or resync";
  const step = (SYNC_STEPS as readonly string[]).indexOf(name);
  if (step < 0) return name;
  return `step ${step + 1} of ${SYNC_STEPS.length}`;
}

/** Seconds as a short human figure: 0.4 s, 12 s, 3 min 5 s, 2 h 10 min. */
export function humanSeconds(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "-";
  if (s < 10) return `${Math.max(0, s).toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** The commands that bring a table in error back, with the config as the page's reader would type it. */
export function fixCommands(configPath: string, table: string): string[] {
  return [`londiste ${configPath} repair ${table} --apply`, `londiste ${configPath} subscriber resync ${table}`];
}

export function copyView(p: CopyProgress): CopyView {
  const percent = p.estimated_rows && p.estimated_rows > 0 ? Math.min(100, (100 * p.rows) / p.estimated_rows) : p.phase === "done" ? 100 : null;
  const of = p.estimated_rows && p.estimated_rows > 0 ? ` of about ${p.estimated_rows}` : "";
  const eta = p.phase === "done" ? ", done" : p.eta_s === null ? "" : `, about ${humanSeconds(p.eta_s)} left`;
  return {
    rows: p.rows,
    estimatedRows: p.estimated_rows,
    percent: percent === null ? null : Math.round(percent * 10) / 10,
    mbPerS: p.mb_per_s,
    etaS: p.phase === "done" ? 0 : p.eta_s,
    worker: p.worker,
    text: `${p.rows} rows${of} at ${p.mb_per_s.toFixed(1)} MB/s${eta}`,
  };
}

/** The chart's text alternative: now, least and most of the window. */
export function lagText(points: Array<[number, number]>, lagNow: number | null): string {
  if (points.length === 0) return lagNow === null ? "no lag measured yet" : `lag now ${humanSeconds(lagNow)}`;
  const values = points.map((p) => p[1]);
  const minutes = Math.max(1, Math.round((points.at(-1)![0] - points[0]![0]) / 60_000));
  return (
    `lag now ${humanSeconds(lagNow ?? values.at(-1)!)}; over the last ${minutes} min ` +
    `least ${humanSeconds(Math.min(...values))}, most ${humanSeconds(Math.max(...values))} (${points.length} points)`
  );
}

/** `host-pid` (the services' instance name) → host. */
export function hostOf(instance: string): string {
  return instance.replace(/-\d+$/, "");
}

function serviceView(r: PingReply): ServiceView {
  const service = r.service ?? "ticker";
  const role = r.role ?? (service === "copy" ? (r.copies && r.copies.length > 0 ? `copying ${r.copies.join(", ")}` : "idle") : r.state ?? "running");
  return { service, role, host: hostOf(r.instance), instance: r.instance, version: r.version ?? "" };
}

/** The states a table went through, e.g. "none → in-copy → catching-up → ok" (repeats folded). */
export function pathText(history: Array<{ from: string | null; to: string | null }>): string {
  if (history.length === 0) return "";
  const states = [history[0]!.from, ...history.map((h) => h.to)].map(stateName);
  return states.filter((s, i) => i === 0 || s !== states[i - 1]).join(" → ");
}

export function jobView(model: DashboardModel, job: string, now: number, configPath = "CONF"): JobView | undefined {
  const j = model.jobs.get(job);
  if (!j) return undefined;
  const tables: TableView[] = [...j.tables.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([table, t]) => {
      const copying = t.state === "in-copy" || t.state === "catching-up" || (t.progress?.phase === "copying" && now - t.progressAt < PROGRESS_STALE_MS);
      const path = pathText(t.history);
      return {
        table,
        state: stateName(t.state),
        place: placeInMachine(t.state),
        since: t.since,
        path,
        copy: t.progress && copying ? copyView(t.progress) : null,
        error: stateName(t.state) === "error" ? { message: t.error ?? "(no message)", fix: fixCommands(configPath, table) } : null,
      };
    });
  const warnings = [
    ...(j.statusProblem ? [`status: ${j.statusProblem}`] : []),
    ...(j.tickerWarning ? [j.tickerWarning] : []),
    ...(j.registered === false ? ["replay's consumer is not registered on the provider: nothing is replayed"] : []),
  ];
  const tickers = [...model.tickers.values()].filter((t) => j.queue !== null && t.queues.includes(j.queue));
  const services = [...j.services.values(), ...tickers.flatMap((t) => [...t.services.values()])]
    .map((s) => serviceView(s.reply))
    .sort((a, b) => a.service.localeCompare(b.service) || a.instance.localeCompare(b.instance));
  return {
    job,
    queue: j.queue,
    lagNow: j.lagNow,
    lag: j.lag.map(([t, v]) => [t / 1000, v]),
    lagText: lagText(j.lag, j.lagNow),
    pending: j.pending,
    lastTick: j.lastTick,
    warnings,
    tables,
    services,
    errors: tables.filter((t) => t.error).length,
  };
}

/** Every job, in name order, with `configPath` shown in the fix commands of `configJob` (others get CONF). */
export function dashboardView(model: DashboardModel, now: number, configJob?: string, configPath?: string): DashboardView {
  const jobs = [...model.jobs.keys()]
    .sort()
    .map((job) => jobView(model, job, now, job === configJob && configPath ? configPath : "CONF")!);
  return { generatedAt: new Date(now).toISOString(), jobs };
}
