/**
 * `londiste CONFIG watch`: prints the job's table state changes as they
 * arrive on JetStream, from the oldest kept (so a change made while
 * nobody watched is shown too); --json prints each message as one line
 * of JSON. Runs until SIGINT/SIGTERM.
 */
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";
import { ensureStateStream } from "../../shared/londiste/state-events.ts";

export function describeChange(m: StateChangeMessage): string {
  const event = m.event as { type?: string; actor?: string; message?: string };
  const why = event.type === "FAIL" && event.message ? `: ${event.message}` : "";
  const change = event.type === "ADDED" ? "added to the set, (none)" : `${m.from ?? "(none)"} → ${m.to ?? "(none)"}`;
  return `${m.time}  ${m.table}  ${change}  [${event.type ?? "?"} by ${event.actor ?? "?"}]${why}`;
}

export async function watchStateChanges(
  nc: NatsConnection,
  prefix: string,
  job: string,
  options: { json: boolean; write: (line: string) => void; signal: AbortSignal },
): Promise<void> {
  const stream = await ensureStateStream(nc, prefix, job);
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume();
  options.signal.addEventListener("abort", () => void messages.close(), { once: true });
  for await (const msg of messages) {
    const change = msg.json<StateChangeMessage>();
    options.write(options.json ? JSON.stringify(change) : describeChange(change));
  }
}
