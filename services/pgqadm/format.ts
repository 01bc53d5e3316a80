/** Human-readable output of pgqadm replies. */
import { formatSeconds, formatTable } from "../../shared/cli/table.ts";

interface StatusResult {
  postgres_version: string;
  pgq_version: string | null;
  queues: Array<Record<string, number | string | boolean | null>>;
  consumers: Array<Record<string, number | string | boolean | null>>;
}

function formatStatus(s: StatusResult): string {
  const out = [`Postgres version: ${s.postgres_version}   PgQ version: ${s.pgq_version ?? "not installed"}`, ""];
  out.push(
    formatTable(
      ["Event queue", "Rotation", "Ticker", "TLag", "Last tick", "Pending", "Ev/s"],
      s.queues.map((q) => [
        q.queue as string,
        `${q.ntables}/${formatSeconds(q.rotation_period_s as number)}`,
        q.external_ticker
          ? "external"
          : `${q.ticker_max_count}/${formatSeconds(q.ticker_max_lag_s as number)}/${formatSeconds(q.ticker_idle_period_s as number)}${q.ticker_paused ? " paused" : ""}`,
        formatSeconds(q.ticker_lag_s as number | null),
        q.last_tick_id as number,
        q.pending_events as number,
        q.events_per_s === null ? "-" : (q.events_per_s as number).toFixed(1),
      ]),
    ),
  );
  for (const queue of s.queues) {
    const consumers = s.consumers.filter((c) => c.queue === queue.queue);
    if (consumers.length === 0) continue;
    out.push("", `${queue.queue as string}:`);
    out.push(
      formatTable(
        ["  Consumer", "Lag", "LastSeen", "Pending", "Batch"],
        consumers.map((c) => [
          `  ${c.consumer as string}`,
          formatSeconds(c.lag_s as number | null),
          formatSeconds(c.last_seen_s as number),
          c.pending_events as number,
          c.current_batch as number | null,
        ]),
      ),
    );
  }
  return out.join("\n");
}

export function formatResult(command: string, result: unknown): string {
  if (command === "status") return formatStatus(result as StatusResult);
  if (command === "show-batch-events") {
    const { events } = result as { events: Array<Record<string, unknown>> };
    return formatTable(
      ["ev_id", "ev_time", "ev_txid", "retry", "type", "data", "extra1", "extra2", "extra3", "extra4"],
      events.map((e) => [
        e.id as number,
        String(e.time),
        e.txid as number,
        e.retry as number | null,
        e.type as string,
        e.data as string,
        e.extra1 as string,
        e.extra2 as string,
        e.extra3 as string,
        e.extra4 as string,
      ]),
    );
  }
  if (result && typeof result === "object") {
    return Object.entries(result as Record<string, unknown>)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
      .join("\n");
  }
  return String(result);
}
