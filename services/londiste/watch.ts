/**
 * `londiste CONFIG watch`: prints the job's table state changes as they
 * arrive on JetStream. By default only changes made from now on; `--since
 * TIME` starts at a time (kept history is 14 days), `--all` at the oldest
 * kept change. --json prints each message as one line of JSON. Runs until
 * SIGINT/SIGTERM, or until its output is closed (`watch | head`).
 */
import { DeliverPolicy, jetstream, jetstreamManager, type OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { UsageError } from "../../shared/cli/args.ts";
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";
import { ensureStateStream } from "../../shared/londiste/state-events.ts";

/** Where a watch starts: new changes only, from a time, or from the oldest kept. */
export type WatchStart = { from: "now" } | { from: "time"; time: Date } | { from: "all" };

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * The start of `watch [--since TIME | --all]`. TIME is an ISO date/time
 * (`2026-11-27`, `2026-11-27T10:00:00Z`) or an age: a whole number with
 * s, m, h or d (`30m` = the last 30 minutes).
 */
export function watchStart(options: { since?: string | true; all?: string | true }, now: Date = new Date()): WatchStart {
  const { since, all } = options;
  if (since !== undefined && all !== undefined) throw new UsageError("--since and --all do not go together");
  if (all !== undefined) return { from: "all" };
  if (since === undefined) return { from: "now" };
  const text = String(since).trim();
  const age = /^(\d+)\s*([smhd])$/.exec(text);
  if (age) return { from: "time", time: new Date(now.getTime() - Number(age[1]) * UNIT_SECONDS[age[2]!]! * 1000) };
  // A date and optional time; a bare number is not one (Date.parse would take it as a year).
  const time = /^\d{4}-\d{2}-\d{2}/.test(text) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) {
    throw new UsageError(`--since needs a date/time (2026-11-27T10:00:00Z) or an age (30s, 10m, 2h, 1d), got "${text}"`);
  }
  return { from: "time", time };
}

/** What the watch prints first on stderr: where it starts. */
export function describeStart(job: string, start: WatchStart): string {
  const from =
    start.from === "now" ? "from now on (--since TIME or --all for history)" : start.from === "all" ? "from the oldest kept" : `since ${start.time.toISOString()}`;
  return `watching the state changes of job ${job} ${from} (Ctrl-C stops)`;
}

/**
 * The ordered consumer's start. "Now" is the sequence after the stream's
 * last message rather than DeliverPolicy.New: an ordered consumer that is
 * recreated (after a NATS outage) before it saw any message restarts from
 * its recorded start sequence, and with New that would be the stream's
 * first message.
 */
export function consumerStart(start: WatchStart, lastSeq: number): Partial<OrderedConsumerOptions> {
  if (start.from === "all") return { deliver_policy: DeliverPolicy.All };
  if (start.from === "time") return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.time.toISOString() };
  return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 };
}

export function describeChange(m: StateChangeMessage): string {
  const event = m.event as { type?: string; actor?: string; message?: string };
  const why = event.type === "FAIL" && event.message ? `: ${event.message}` : "";
  const change = event.type === "ADDED" ? "added to the set, (none)" : `${m.from ?? "(none)"} → ${m.to ?? "(none)"}`;
  return `${m.time}  ${m.table}  ${change}  [${event.type ?? "?"} by ${event.actor ?? "?"}]${why}`;
}

/** How long a watch's pull request waits for messages (ms); see watchStateChanges. */
export const WATCH_PULL_EXPIRES_MS = 5_000;

export async function watchStateChanges(
  nc: NatsConnection,
  prefix: string,
  job: string,
  options: { json: boolean; start: WatchStart; write: (line: string) => void; started: () => void; signal: AbortSignal; replicas?: number },
): Promise<void> {
  const stream = await ensureStateStream(nc, prefix, job, options.replicas);
  const { state } = await (await jetstreamManager(nc)).streams.info(stream);
  const consumer = await jetstream(nc).consumers.get(stream, consumerStart(options.start, state.last_seq));
  // A recreated consumer that saw nothing yet starts at the stream's first message: skip what is older.
  const startMs = options.start.from === "time" ? options.start.time.getTime() : undefined;
  // Pull requests that expire every 5 s (heartbeats every 2.5 s) rather than 30 s: when the node
  // serving the consumer dies (a NATS node killed, the stream's leader with it), two missed
  // heartbeats make the ordered consumer start again where it stopped, in seconds, not a minute.
  const messages = await consumer.consume({ expires: WATCH_PULL_EXPIRES_MS });
  options.signal.addEventListener("abort", () => void messages.close(), { once: true });
  if (options.signal.aborted) void messages.close();
  // Said once the consumer exists: a change made after this line is shown.
  options.started();
  for await (const msg of messages) {
    if (startMs !== undefined && msg.info.timestampNanos / 1e6 < startMs) continue;
    const change = msg.json<StateChangeMessage>();
    options.write(options.json ? JSON.stringify(change) : describeChange(change));
  }
}
