/** Human-readable output of londiste replies. */
import { formatSeconds, formatTable } from "../../shared/cli/table.ts";

interface NameOutcome {
  name: string;
  ok: boolean;
  message: string;
  warnings?: string[];
  /** repair --dry-run: the statements that would fix the table. */
  statements?: string[];
  statements_truncated?: boolean;
  /** repair: the table's fix file (its name is made shell-safe, so say which table it holds). */
  file?: string;
  /** compare/repair: equal, differ, repaired, refused, skipped, failed. */
  status?: string;
}

function isOutcomeList(v: unknown): v is NameOutcome[] {
  return Array.isArray(v) && v.every((o) => typeof o === "object" && o !== null && "name" in o && "ok" in o);
}

/** Whether a reply reports a failure for any name (exit code 1). */
export function anyFailed(result: unknown): boolean {
  return isOutcomeList(result) && result.some((o) => !o.ok);
}

function outcomes(list: NameOutcome[]): string {
  const out: string[] = [];
  for (const o of list) {
    out.push(`${o.name}: ${o.ok ? "" : "FAILED: "}${o.message}`);
    for (const w of o.warnings ?? []) out.push(`  warning: ${w}`);
    if (o.file) out.push(`  fix file: ${o.file}`);
    for (const st of o.statements ?? []) out.push(`  ${st}`);
    if (o.statements_truncated) out.push("  -- ... more statements: run repair without --dry-run for the whole fix file");
  }
  return out.join("\n");
}

type Row = Record<string, unknown>;

function state(s: unknown): string {
  return s === null || s === undefined ? "(none)" : String(s);
}

function tables(rows: Row[]): string {
  if (rows.length === 0) return "(no tables)";
  const lines = [
    formatTable(
      ["Table", "State", "Destination"],
      rows.map((t) => [t.table as string, state(t.state), (t.dest_table as string | null) ?? "-"]),
    ),
  ];
  for (const t of rows) {
    if (t.error) lines.push(`error in ${t.table as string}: ${t.error as string}`);
    const p = t.copy_progress as { rows?: number; mb_per_s?: number; eta_s?: number | null; phase?: string } | null;
    if (p && p.phase === "copying") {
      const eta = p.eta_s === null || p.eta_s === undefined ? "" : `, about ${formatSeconds(p.eta_s)} left`;
      lines.push(`copying ${t.table as string}: ${p.rows ?? 0} rows at ${(p.mb_per_s ?? 0).toFixed(1)} MB/s${eta} (${(t.copy_worker as string | null) ?? "?"})`);
    }
  }
  return lines.join("\n");
}

function status(s: Row): string {
  const replay = s.replay as Row;
  const lines = [
    `Job ${s.job as string}: queue ${s.queue as string}, consumer ${s.consumer as string}`,
    `  provider: ${s.provider_installed ? "installed" : "londiste not installed"}; subscriber: ${s.subscriber_installed ? "installed" : "londiste not installed"}`,
    s.registered
      ? `  lag ${formatSeconds(s.lag_s as number | null)}, last seen ${formatSeconds(s.last_seen_s as number)} ago, provider tick ${s.last_tick as number}, subscriber tick ${(s.subscriber_tick as number | null) ?? "-"}, pending events ${(s.pending_events as number | null) ?? "-"}`
      : s.unregistered_at
        ? `  consumer unregistered by "subscriber unregister" at ${s.unregistered_at as string}: nothing is replayed until "subscriber register"`
        : "  consumer not registered on the provider",
    ...(s.ticker_warning ? [`  WARNING: ${s.ticker_warning as string}`] : []),
    `  replay ${replay.instance as string}: ${replay.role as string}, ${replay.batches as number} batches, ${replay.changes as number} changes since start` +
      (replay.lastError ? `; last error: ${replay.lastError as string}` : ""),
    "",
    tables(s.tables as Row[]),
  ];
  const seqs = s.seqs as string[];
  if (seqs.length > 0) lines.push("", `Sequences: ${seqs.join(", ")}`);
  return lines.join("\n");
}

/** compare and repair: the tables that were not compared, named once more at the end so none goes unnoticed. */
function notCompared(list: NameOutcome[]): string {
  const left = list.filter((o) => o.status === "skipped" || o.status === "refused");
  if (left.length === 0) return "";
  const skipped = left.filter((o) => o.status === "skipped").map((o) => o.name);
  const refused = left.filter((o) => o.status === "refused").map((o) => o.name);
  const parts = [
    ...(skipped.length > 0 ? [`skipped (not named, not in sync yet): ${skipped.join(", ")}`] : []),
    ...(refused.length > 0 ? [`refused: ${refused.join(", ")}`] : []),
  ];
  return `\n${list.length - left.length} of ${list.length} tables compared; ${parts.join("; ")}`;
}

export function formatResult(command: string, result: unknown): string {
  if (isOutcomeList(result)) {
    if (result.length === 0) return "(nothing)";
    return outcomes(result) + (command === "compare" || command === "repair" ? notCompared(result) : "");
  }
  switch (command) {
    case "status":
      return status(result as Row);
    case "subscriber.tables":
      return tables(result as Row[]);
    case "subscriber.missing": {
      const r = result as { tables: string[]; seqs: string[] };
      const lines = [...r.tables.map((t) => `table ${t}`), ...r.seqs.map((q) => `seq ${q}`)];
      return lines.length > 0 ? lines.join("\n") : "(nothing missing)";
    }
    case "subscriber.fkeys": {
      const r = result as { fkeys: Array<{ drop: string; create: string }>; pending: Array<{ name: string; from: string; definition: string }> };
      const lines = ["-- dropping", ...r.fkeys.map((f) => f.drop), "-- creating", ...r.fkeys.map((f) => f.create)];
      if (r.pending.length > 0) {
        lines.push("-- pending (set aside until both tables are in sync)");
        for (const p of r.pending) lines.push(`-- ${p.from}: ${p.name} ${p.definition}`);
      }
      return lines.join("\n");
    }
    case "subscriber.triggers": {
      const rows = result as Row[];
      if (rows.length === 0) return "(no triggers)";
      return formatTable(
        ["Table", "Trigger", "Kind", "Mode", "On replay", "On local writes"],
        rows.map((r) => [r.table as string, r.trigger as string, r.kind as string, r.mode as string, r.fires_on_replay ? "fires" : "-", r.fires_on_local_writes ? "fires" : "-"]),
      );
    }
  }
  if (Array.isArray(result)) return result.length === 0 ? "(none)" : result.map(String).join("\n");
  if (typeof result === "object" && result !== null) {
    return Object.entries(result)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
      .join("\n");
  }
  return String(result);
}
