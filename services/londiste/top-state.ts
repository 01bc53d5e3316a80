/**
 * What `londiste CONF top` knows about a job, gathered from NATS only
 * (status replies, pings, JetStream state changes, copy progress and tick
 * notices), and its shaping into the view the terminal shows. Pure: the
 * NATS side (top.ts) feeds the record* functions, the renderer
 * (top-render.ts) draws shapeView()'s result. No I/O, no clock: every
 * function takes the time it runs at.
 */
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";

/** The lag history kept: the last hour, as the issue asks. */
export const LAG_HISTORY_MS = 3600_000;

/** A copy progress report that old, with no newer one, is shown as stale. */
export const STALE_COPY_MS = 15_000;

/** The `status` reply fields top uses (services/replay/admin/status-command.ts). */
export interface StatusReply {
  job: string;
  queue: string;
  registered: boolean;
  lag_s: number | null;
  last_tick: number | null;
  subscriber_tick: number | null;
  pending_events: number | null;
  ticker_warning: string | null;
  replay: { instance?: string; role?: string; batches?: number; changes?: number; lastError?: string | null; lastBatchAt?: string | null };
  tables: Array<{
    table: string;
    state: string | null;
    error: string | null;
    copy_worker: string | null;
    copy_progress: CopyReport | null;
  }>;
}

/** A copy progress report (services/copy/progress.ts), as published and as stored in status. */
export interface CopyReport {
  table: string;
  worker?: string;
  phase?: string;
  rows: number;
  bytes?: number;
  mb_per_s?: number;
  rows_per_s?: number;
  estimated_rows?: number | null;
  eta_s?: number | null;
  time?: string;
}

/** A `ping` reply of one of the job's services (shared/service-shell.ts controlCommands). */
export interface PingReply {
  instance: string;
  service?: string;
  role?: string;
  version?: string;
}

export interface TopState {
  job: string;
  queue: string;
  /** The last status reply and when it came; null before the first. */
  status: StatusReply | null;
  statusAt: number | null;
  /** Why the last status request got no reply (null when it did). */
  statusProblem: string | null;
  /** Lag samples (ms since epoch, seconds), oldest first, the last hour. */
  lag: Array<{ at: number; lag: number }>;
  /** Each table's last transition seen on JetStream. */
  transitions: Map<string, StateChangeMessage>;
  /** Each table's last copy progress report seen on NATS, with its arrival time. */
  copies: Map<string, { report: CopyReport; at: number }>;
  /** The last tick notice of the job's queue. */
  lastTick: { tickId: number; at: number } | null;
  /** The services that answered the last ping round. */
  services: PingReply[];
  /** Whether the NATS connection is up. */
  connected: boolean;
}

export function initialState(job: string, queue: string): TopState {
  return {
    job,
    queue,
    status: null,
    statusAt: null,
    statusProblem: null,
    lag: [],
    transitions: new Map(),
    copies: new Map(),
    lastTick: null,
    services: [],
    connected: true,
  };
}

export function recordStatus(state: TopState, reply: StatusReply, now: number): void {
  state.status = reply;
  state.statusAt = now;
  state.statusProblem = null;
  if (reply.lag_s !== null && Number.isFinite(reply.lag_s)) state.lag.push({ at: now, lag: reply.lag_s });
  while (state.lag.length > 0 && state.lag[0]!.at < now - LAG_HISTORY_MS) state.lag.shift();
}

export function recordStatusProblem(state: TopState, problem: string): void {
  state.statusProblem = problem;
}

export function recordTransition(state: TopState, change: StateChangeMessage): void {
  const known = state.transitions.get(change.table);
  // The stream is in order per job; a redelivery after a reconnect must not go back in time.
  if (known && known.id >= change.id) return;
  if (change.to === "removed") state.transitions.delete(change.table);
  else state.transitions.set(change.table, change);
}

export function recordCopyProgress(state: TopState, report: CopyReport, now: number): void {
  state.copies.set(report.table, { report, at: now });
}

export function recordTick(state: TopState, tickId: number, now: number): void {
  state.lastTick = { tickId, at: now };
}

export function recordServices(state: TopState, services: PingReply[]): void {
  state.services = [...services].sort((a, b) => `${a.service ?? ""} ${a.instance}`.localeCompare(`${b.service ?? ""} ${b.instance}`));
}

// ------------------------------------------------------------------ the view

export interface TableRow {
  table: string;
  /** merge_state text form, "(none)" for none. */
  state: string;
  /** Seconds since the last transition seen, null when none was seen. */
  sinceS: number | null;
  /** The event of the last transition and who made it ("COPY.DONE by copy"). */
  lastEvent: string | null;
}

export interface CopyRow {
  table: string;
  worker: string | null;
  rows: number;
  estimatedRows: number | null;
  /** 0..1, null when the table's size is unknown. */
  fraction: number | null;
  mbPerS: number | null;
  etaS: number | null;
  /** No report for STALE_COPY_MS: the worker may be gone. */
  stale: boolean;
}

export interface ErrorRow {
  /** The table, or null for an error of the job itself (replay's last error, the ticker). */
  table: string | null;
  message: string;
  /** The command that fixes it, when there is one. */
  fix: string | null;
}

export interface TopView {
  job: string;
  queue: string;
  connected: boolean;
  /** Replay's answer is missing: why. */
  problem: string | null;
  /** Seconds since the status shown was received. */
  statusAgeS: number | null;
  lagS: number | null;
  /** Lag samples, oldest first. */
  lagHistory: number[];
  /** Seconds the lag history covers. */
  lagSpanS: number;
  registered: boolean | null;
  providerTick: number | null;
  subscriberTick: number | null;
  pendingEvents: number | null;
  /** The last tick notice: its id and age in seconds. */
  tick: { id: number; ageS: number } | null;
  replay: { instance: string; role: string; batches: number; changes: number } | null;
  services: Array<{ service: string; instance: string; role: string }>;
  tables: TableRow[];
  copies: CopyRow[];
  errors: ErrorRow[];
}

/** How the user runs the job's commands, for the fixes shown: `londiste CONF`. */
export interface FixCommand {
  londiste: string;
}

export function shapeView(state: TopState, now: number, fix: FixCommand): TopView {
  const status = state.status;
  const names = new Set<string>([...(status?.tables.map((t) => t.table) ?? []), ...state.transitions.keys()]);
  const fromStatus = new Map(status?.tables.map((t) => [t.table, t]) ?? []);
  const tables: TableRow[] = [];
  const copies: CopyRow[] = [];
  const errors: ErrorRow[] = [];
  for (const table of [...names].sort()) {
    const row = fromStatus.get(table);
    const change = state.transitions.get(table);
    const tableState = currentState(row, change, state.statusAt);
    tables.push({
      table,
      state: tableState ?? "(none)",
      sinceS: change ? Math.max(0, (now - Date.parse(change.time)) / 1000) : null,
      lastEvent: change ? describeEvent(change.event) : null,
    });
    const copy = copyRow(table, tableState, state.copies.get(table), row, now);
    if (copy) copies.push(copy);
    if (tableState === "error") {
      const failMessage = change?.event.type === "FAIL" && typeof change.event.message === "string" ? change.event.message : null;
      errors.push({
        table,
        message: row?.error ?? failMessage ?? "in error (no message recorded)",
        fix: `${fix.londiste} repair ${table} --apply   (or: ${fix.londiste} subscriber resync ${table})`,
      });
    }
  }
  if (status?.replay.lastError) errors.push({ table: null, message: `replay: ${status.replay.lastError}`, fix: null });
  if (status?.ticker_warning) errors.push({ table: null, message: `ticker: ${status.ticker_warning}`, fix: null });
  if (status && !status.registered) {
    errors.push({ table: null, message: "replay's consumer is not registered on the provider queue", fix: `${fix.londiste} subscriber register` });
  }
  const oldest = state.lag[0];
  return {
    job: state.job,
    queue: state.queue,
    connected: state.connected,
    problem: state.statusProblem,
    statusAgeS: state.statusAt === null ? null : Math.max(0, (now - state.statusAt) / 1000),
    lagS: status?.lag_s ?? null,
    lagHistory: state.lag.map((s) => s.lag),
    lagSpanS: oldest ? Math.max(0, (now - oldest.at) / 1000) : 0,
    registered: status ? status.registered : null,
    providerTick: status?.last_tick ?? null,
    subscriberTick: status?.subscriber_tick ?? null,
    pendingEvents: status?.pending_events ?? null,
    tick: state.lastTick ? { id: state.lastTick.tickId, ageS: Math.max(0, (now - state.lastTick.at) / 1000) } : null,
    replay: status
      ? {
          instance: status.replay.instance ?? "?",
          role: status.replay.role ?? "?",
          batches: status.replay.batches ?? 0,
          changes: status.replay.changes ?? 0,
        }
      : null,
    services: state.services.map((s) => ({ service: s.service ?? "?", instance: s.instance, role: s.role ?? "" })),
    tables,
    copies,
    errors,
  };
}

/**
 * A table's state: the newer of the status reply and the last transition
 * (a transition comes as it happens, a status reply every few seconds).
 */
function currentState(row: StatusReply["tables"][number] | undefined, change: StateChangeMessage | undefined, statusAt: number | null): string | null {
  if (!change) return row ? row.state : null;
  if (!row || statusAt === null) return change.to;
  return Date.parse(change.time) > statusAt ? change.to : row.state;
}

function describeEvent(event: Record<string, unknown>): string {
  const type = typeof event.type === "string" ? event.type : "?";
  return typeof event.actor === "string" ? `${type} by ${event.actor}` : type;
}

/** The table's copy as a progress bar, while it copies. */
function copyRow(
  table: string,
  tableState: string | null,
  live: { report: CopyReport; at: number } | undefined,
  row: StatusReply["tables"][number] | undefined,
  now: number,
): CopyRow | null {
  if (tableState !== "in-copy") return null;
  // The live report is the newest; the stored one (status) covers a top started mid-copy.
  const stored = row?.copy_progress ?? null;
  const report = live?.report ?? stored;
  if (!report || report.phase === "done") {
    return { table, worker: row?.copy_worker ?? null, rows: 0, estimatedRows: null, fraction: null, mbPerS: null, etaS: null, stale: false };
  }
  const at = live?.at ?? (report.time ? Date.parse(report.time) : now);
  const estimated = report.estimated_rows ?? null;
  return {
    table,
    worker: report.worker ?? row?.copy_worker ?? null,
    rows: report.rows,
    estimatedRows: estimated,
    // reltuples is an estimate: the rows may pass it, and the bar stops at full.
    fraction: estimated !== null && estimated > 0 ? Math.min(1, report.rows / estimated) : null,
    mbPerS: report.mb_per_s ?? null,
    etaS: report.eta_s ?? null,
    stale: now - at > STALE_COPY_MS,
  };
}
