/**
 * Draws `londiste CONF top`'s view (top-state.ts shapeView) as plain text
 * lines: a header with the lag and its sparkline, the job's services, a
 * row per table, a progress bar per copy and the errors with the command
 * that fixes each. Pure: the terminal side (top.ts) positions the lines.
 * Only ASCII besides the sparkline's block characters, so it reads on any
 * terminal over SSH.
 */
import { formatSeconds } from "../../shared/cli/table.ts";
import type { CopyRow, TopView } from "./top-state.ts";

const SPARK = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
const BAR_WIDTH = 24;

export interface RenderOptions {
  /** Terminal columns: longer lines are cut. Undefined: no limit (plain output). */
  width?: number;
  /** Terminal rows: the table list is cut to fit. Undefined: no limit. */
  height?: number;
  /** The key hint in the header (the full-screen view only). */
  keys?: boolean;
}

/** The lag samples as one block character each (the last `width`), scaled to their maximum. */
export function sparkline(values: number[], width: number): string {
  const shown = values.slice(-Math.max(0, width));
  if (shown.length === 0) return "";
  const max = Math.max(...shown);
  if (max <= 0) return SPARK[0]!.repeat(shown.length);
  return shown.map((v) => SPARK[Math.min(SPARK.length - 1, Math.max(0, Math.round((v / max) * (SPARK.length - 1))))]).join("");
}

/** `[#########---------]` for a fraction 0..1; unknown size: a bar of `?`. */
export function progressBar(fraction: number | null, width = BAR_WIDTH): string {
  if (fraction === null) return `[${"?".repeat(width)}]`;
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

export function renderTop(view: TopView, options: RenderOptions = {}): string[] {
  const header = headerLines(view, options);
  const tables = tableLines(view);
  const rest = [...copyLines(view.copies), ...errorLines(view)];
  let lines: string[];
  if (options.height !== undefined && header.length + tables.length + rest.length > options.height) {
    // Too tall: the copies and errors stay, the table list gives way (with a count of what is hidden).
    const room = Math.max(2, options.height - header.length - rest.length - 1);
    const hidden = tables.length - room;
    lines = [...header, ...tables.slice(0, room), `... ${hidden} more lines: enlarge the window`, ...rest].slice(0, options.height);
  } else {
    lines = [...header, ...tables, ...rest];
  }
  return options.width === undefined ? lines : lines.map((l) => cut(l, options.width!));
}

function cut(line: string, width: number): string {
  const chars = [...line];
  return chars.length <= width ? line : chars.slice(0, width).join("");
}

function headerLines(view: TopView, options: RenderOptions): string[] {
  const title = `londiste top: job ${view.job}, queue ${view.queue}`;
  const lines = [options.keys ? `${title}    (q quits)` : title];
  if (!view.connected) lines.push("NATS connection lost: reconnecting; the figures below are from before");
  if (view.problem) lines.push(`replay does not answer: ${view.problem}`);
  const lag = `lag ${formatSeconds(view.lagS)}`;
  if (view.lagHistory.length > 0) {
    // Room left beside the figures around it (about 40 characters).
    const room = options.width === undefined ? 60 : Math.max(10, options.width - lag.length - 40);
    const max = Math.max(...view.lagHistory);
    lines.push(`${lag}  ${sparkline(view.lagHistory, room)}  (last ${formatSeconds(view.lagSpanS)}, max ${formatSeconds(max)})`);
  } else {
    lines.push(lag);
  }
  const ticks = [
    `provider tick ${view.providerTick ?? "-"}`,
    `subscriber tick ${view.subscriberTick ?? "-"}`,
    `pending events ${view.pendingEvents ?? "-"}`,
    view.tick ? `last tick notice #${view.tick.id} ${formatSeconds(view.tick.ageS)} ago` : "no tick notice yet",
  ];
  lines.push(ticks.join(", "));
  if (view.replay) {
    lines.push(`replay ${view.replay.instance}: ${view.replay.role}, ${view.replay.batches} batches, ${view.replay.changes} changes since start`);
  }
  const services = view.services.map((s) => `${s.service} ${s.instance}${s.role ? ` (${s.role})` : ""}`);
  lines.push(`services: ${services.length > 0 ? services.join(", ") : "none answered"}`);
  if (view.statusAgeS !== null && view.statusAgeS >= 10) lines.push(`(status from ${formatSeconds(view.statusAgeS)} ago)`);
  lines.push("");
  return lines;
}

function tableLines(view: TopView): string[] {
  if (view.tables.length === 0) return ["(no tables)"];
  const rows = view.tables.map((t) => [t.table, t.state, t.sinceS === null ? "-" : formatSeconds(t.sinceS), t.lastEvent ?? "-"]);
  const headers = ["TABLE", "STATE", "SINCE", "LAST CHANGE"];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

function copyLines(copies: CopyRow[]): string[] {
  if (copies.length === 0) return [];
  const lines = ["", "COPIES"];
  for (const c of copies) {
    const pct = c.fraction === null ? "  ?%" : `${String(Math.floor(c.fraction * 100)).padStart(3)}%`;
    const rows = c.estimatedRows === null ? `${c.rows} rows` : `${c.rows} / ~${c.estimatedRows} rows`;
    const speed = c.mbPerS === null ? "" : `  ${c.mbPerS.toFixed(1)} MB/s`;
    const eta = c.etaS === null ? "" : `  ETA ${formatSeconds(c.etaS)}`;
    const who = c.worker ? `  (${c.worker})` : "";
    const stale = c.stale ? "  [no report lately]" : "";
    lines.push(`${c.table}  ${progressBar(c.fraction)} ${pct}  ${rows}${speed}${eta}${who}${stale}`);
  }
  return lines;
}

function errorLines(view: TopView): string[] {
  if (view.errors.length === 0) return [];
  const lines = ["", "ERRORS"];
  for (const e of view.errors) {
    lines.push(e.table ? `${e.table}: ${oneLine(e.message)}` : oneLine(e.message));
    if (e.fix) lines.push(`  fix: ${e.fix}`);
  }
  return lines;
}

/** Messages may hold newlines (SQL errors with a DETAIL): one screen line each. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " | ");
}
