/**
 * NATS in tests: a client that reconnects quickly, collecting tick notices, raw requests,
 * and a private nats-server (JetStream on) that a test can stop and start again.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import type { TickNotice } from "../../shared/bus/subjects.ts";
import { natsServerBin } from "./nats-server.ts";
import { ServiceProcess } from "./processes.ts";
import { waitFor } from "./wait.ts";

/** A test-side NATS connection that keeps reconnecting quickly (for outage tests). */
export function connectNatsClient(url: string): Promise<NatsConnection> {
  return connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 200, reconnectJitter: 0, timeout: 5_000 });
}

export interface NoticeCollector {
  readonly notices: TickNotice[];
  readonly sub: Subscription;
  /** Waits until a notice matching `match` has arrived (bound in machine time, see wait.ts). */
  waitFor(match: (n: TickNotice) => boolean, timeoutMs?: number, what?: string): Promise<TickNotice>;
}

/** Subscribes to a subject of tick notices and collects them. */
export function collectNotices(nc: NatsConnection, subject: string): NoticeCollector {
  const notices: TickNotice[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      try {
        notices.push(JSON.parse(msg.string()) as TickNotice);
      } catch {
        notices.push({ queue: "<not JSON>", tick_id: -1, time: "", database: msg.string() });
      }
    },
  });
  return {
    notices,
    sub,
    waitFor: (match, timeoutMs = 5_000, what = "a tick notice") => waitFor(() => notices.find(match), { timeoutMs, intervalMs: 50, what }),
  };
}

/** Sends a raw request and returns the parsed JSON reply. */
export async function rawRequest(nc: NatsConnection, subject: string, payload: string | Uint8Array, timeoutMs = 5_000): Promise<unknown> {
  const msg = await nc.request(subject, payload, { timeout: timeoutMs });
  return JSON.parse(msg.string());
}

/** Sends a request and collects every reply that arrives within windowMs (commands every instance answers). */
export async function requestAll(nc: NatsConnection, subject: string, payload: string, windowMs = 1_000): Promise<unknown[]> {
  const replies: unknown[] = [];
  const iter = await nc.requestMany(subject, payload, { strategy: "timer", maxWait: windowMs });
  for await (const msg of iter) replies.push(JSON.parse(msg.string()));
  return replies;
}

/** Starts a private nats-server (JetStream on, store in `dir`) on `port` and waits until it accepts clients. */
export async function startNatsServer(port: number, dir: string, label = "nats-server"): Promise<ServiceProcess> {
  const server = new ServiceProcess(label, natsServerBin(), ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "js")]);
  await waitFor(
    async () => {
      if (!server.running) throw new Error(`${label} exited: ${server.tail()}`);
      const nc = await connect({ servers: `nats://127.0.0.1:${port}`, timeout: 500, reconnect: false });
      await nc.close();
      return true;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: `${label} on port ${port}` },
  );
  return server;
}
