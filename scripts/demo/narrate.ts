/**
 * What the demo says: table state changes and copy progress in words a
 * newcomer understands, each state explained the first time it shows up.
 */
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";

const started = Date.now();

/** Seconds since the demo started, as a fixed-width prefix. */
export function stamp(): string {
  return `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`;
}

export function say(text = ""): void {
  process.stdout.write(`${text}\n`);
}

export function step(text: string): void {
  say();
  say(`${stamp()} ${text}`);
}

/** Indents every line of a command's output. */
export function indent(text: string, prefix = "    "): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `${prefix}${l}`)
    .join("\n");
}

/** The state name without its tick: "wanna-sync:12" → "wanna-sync"; null → "(none)". */
export function baseState(state: string | null): string {
  return state === null ? "(none)" : state.split(":")[0]!;
}

const MEANING: Record<string, string> = {
  "(none)":
    "(none): the subscriber knows the table but has none of its rows yet. Replay, which applies the provider's " +
    "changes, leaves it alone and asks for a copy.",
  "in-copy":
    "in-copy: replay asked the copy workers (over NATS) to copy the table, and a free one takes it. It empties the " +
    "subscriber's table, sets its indexes and foreign keys aside (loading without them is much faster), streams every " +
    "row from the provider with COPY, as of one snapshot, then rebuilds the indexes.",
  "catching-up":
    "catching-up: the rows are in. The provider kept changing during the copy, so the copy worker now reads the " +
    "changes queued since its snapshot and applies this table's ones, until it has reached the end of the queue.",
  "wanna-sync":
    "wanna-sync:T: the copy worker has applied every change up to tick T (a tick is a numbered cut of the queue) " +
    "and stops there. Replay skips this table's changes up to tick T (the copy applied them) and takes the table over at T.",
  "do-sync":
    "do-sync:T: replay has reached tick T and applies this table's changes from now on; the copy worker checks that " +
    "it is at T too, then hands the table over and leaves.",
  ok:
    "ok: in sync. Replay applies every change to this table, batch by batch, moments after it is committed on the provider.",
  error: "error: something went wrong with this table (the message says what); the other tables keep replicating.",
  removed: "removed: the table left the replicated set; its rows stay where they are.",
};

export class StateNarrator {
  private readonly explained = new Set<string>();
  /** Last known state of each table. */
  readonly states = new Map<string, string | null>();
  /** Tables that reached ok, as reported by JetStream. */
  readonly reachedOk = new Set<string>();

  describe(m: StateChangeMessage): string[] {
    const event = m.event as { type?: string; actor?: string; message?: string };
    this.states.set(m.table, m.to);
    const who = event.actor ? ` (by ${event.actor})` : "";
    const lines: string[] = [];
    let state: string;
    if (event.type === "ADDED") {
      state = "(none)";
      lines.push(`${stamp()} ${m.table}: added to the subscriber, state (none)${who}`);
    } else {
      state = m.to === "removed" ? "removed" : baseState(m.to);
      const why = event.type === "FAIL" && event.message ? `: ${event.message}` : "";
      lines.push(`${stamp()} ${m.table}: ${m.from ?? "(none)"} → ${m.to ?? "(none)"}${who}${why}`);
    }
    if (m.to === "ok") this.reachedOk.add(m.table);
    if (!this.explained.has(state) && MEANING[state]) {
      this.explained.add(state);
      lines.push(indent(MEANING[state]!, "           ↳ "));
    }
    return lines;
  }
}

/** One copy progress report (services/copy/progress.ts); every field optional, so an older or newer worker still prints. */
interface Progress {
  phase?: string;
  worker?: string;
  rows?: number;
  bytes?: number;
  estimated_rows?: number | null;
  mb_per_s?: number;
  elapsed_s?: number;
  total_s?: number;
  eta_s?: number | null;
}

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const count = (n: number) => n.toLocaleString("en-US");

/** `worker` is the name to show for the report's worker (e.g. "copy worker 2"). */
export function formatProgress(table: string, raw: unknown, worker: string): string {
  const p = (raw ?? {}) as Progress;
  const rows = num(p.rows);
  const bytes = num(p.bytes);
  const estimate = num(p.estimated_rows);
  const elapsed = num(p.elapsed_s);
  const mbps = num(p.mb_per_s) ?? (bytes !== undefined && elapsed ? bytes / 1e6 / elapsed : undefined);
  const size = bytes === undefined ? "" : `, ${(bytes / 1e6).toFixed(1)} MB`;
  const speed = mbps === undefined ? "" : ` (${mbps.toFixed(1)} MB/s)`;
  if (p.phase === "done") {
    const total = num(p.total_s);
    const rebuild = total !== undefined && elapsed !== undefined && total > elapsed ? `; ${total.toFixed(1)} s with the index rebuild` : "";
    const took = elapsed === undefined ? "" : ` in ${elapsed.toFixed(1)} s`;
    return `${stamp()} ${table}: ${worker} copied ${rows === undefined ? "all" : count(rows)} rows${size}${took}${speed}${rebuild}`;
  }
  const parts: string[] = [];
  if (rows !== undefined) {
    parts.push(estimate && estimate > 0 ? `${count(rows)} of ~${count(estimate)} rows (${Math.min(100, Math.round((100 * rows) / estimate))} %)` : `${count(rows)} rows`);
  }
  let text = `${stamp()} ${table}: ${worker} copying: ${parts.join("")}${size}${speed}`;
  const eta = num(p.eta_s);
  if (eta !== undefined && eta > 0) text += `, about ${Math.ceil(eta)} s to go`;
  return rows === undefined && bytes === undefined ? `${text} ${JSON.stringify(raw)}` : text;
}

let held: string[] | undefined;

/** Prints a live line now, or after the running command's output when one is running. */
export function live(line: string): void {
  if (held) held.push(line);
  else say(line);
}

/** Keeps live lines back (while a command's output is on its way), so they do not split it. */
export function holdLive(): void {
  held ??= [];
}

export function releaseLive(): void {
  const lines = held ?? [];
  held = undefined;
  for (const line of lines) say(line);
}
