/**
 * The replay service (`londiste CONFIG replay`): the main consumer of one
 * replication job. One instance per job is active (a session advisory
 * lock on the subscriber); others stand by and take over when it dies. It
 * replays batches until none is left, then waits for the ticker's NATS
 * notice or loop_delay, whichever comes first. NATS is optional: without
 * it replay polls.
 *
 * Signals: SIGINT/SIGTERM stop between batches (never inside one).
 * Exit codes: 0 stopped, 2 bad config, 1 other failure.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import pg from "pg";
import { connectNats } from "../../shared/bus/connect.ts";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { loadLondisteConfig } from "../../shared/config/londiste.ts";
import { SessionLock } from "../../shared/db/session-lock.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { startService } from "../../shared/service-start.ts";
import { registerConsumer } from "../../shared/pgq/index.ts";
import { replayOneBatch } from "./replay-batch.ts";

/** pg_try_advisory_lock(REPLAY_LOCK_CLASS, hash(job)) on the subscriber: the active replay of a job. */
export const REPLAY_LOCK_CLASS = 1886482804;

/** A stable 32-bit hash of the job name (FNV-1a), as a signed int4. */
export function jobLockKey(job: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(job)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

class Waker {
  private wake: (() => void) | undefined;
  private pending = false;
  notify(): void {
    this.pending = true;
    this.wake?.();
  }
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.wake = done;
    });
  }
}

export async function runReplayService(configPath: string): Promise<number> {
  const started = startService("replay", () => loadLondisteConfig(configPath));
  if ("exitCode" in started) return started.exitCode;
  const { config, log, releasePidfile } = started;

  const stop = new AbortController();
  const waker = new Waker();
  const provider = new pg.Pool({ ...config.provider, max: 3, application_name: `londiste ${config.jobName} replay` });
  const subscriber = new pg.Pool({ ...config.subscriber, max: 3, application_name: `londiste ${config.jobName} replay` });
  provider.on("error", (error) => log.warn({ err: error }, "idle provider connection failed"));
  subscriber.on("error", (error) => log.warn({ err: error }, "idle subscriber connection failed"));

  let nc: NatsConnection | undefined;
  let notices: Subscription | undefined;
  void connectNats(natsSettingsFrom(config.values, `londiste ${config.jobName} replay`), log)
    .then((conn) => {
      if (stop.signal.aborted) return conn.close();
      nc = conn;
      notices = conn.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), { callback: () => waker.notify() });
      log.info("waking on tick notices");
    })
    .catch((error: unknown) => log.error({ err: error }, "NATS setup failed; polling every loop_delay"));

  const onStop = (signal: string) => {
    log.info({ signal }, "stopping between batches");
    stop.abort();
  };
  process.on("SIGINT", onStop);
  process.on("SIGTERM", onStop);

  const lock = new SessionLock(config.subscriber, [REPLAY_LOCK_CLASS, jobLockKey(config.jobName)]);
  const settings = { queue: config.queue, consumer: config.consumer, ignoreTruncate: config.ignoreTruncate };
  const apply = async (client: pg.ClientBase, changes: Parameters<typeof applyChanges>[1]) => {
    const report = await applyChanges(client, changes, {
      onMissingRow: config.onMissingRow,
      log: (msg, details) => log.warn(details, msg),
    });
    if (report.missedTotal > 0) log.warn({ missed: report.missedTotal }, "updates/deletes that found no row");
  };

  let state: "starting" | "standby" | "active" = "starting";
  let registered = false;
  let backoffMs = 1000;
  let batches = 0;
  let changes = 0;
  log.info({ queue: config.queue, consumer: config.consumer }, "replay starting");
  try {
    while (!stop.signal.aborted) {
      try {
        if (!(await lock.tryAcquire())) {
          if (state !== "standby") log.info("standing by: another replay of this job is active");
          state = "standby";
          await waker.wait(1000, stop.signal);
          continue;
        }
        if (state !== "active") log.info("active: this instance replays the job");
        state = "active";
        if (!registered) {
          await registerConsumer(provider, config.queue, config.consumer);
          registered = true;
        }
        const outcome = await replayOneBatch(provider, subscriber, settings, apply);
        backoffMs = 1000;
        if (outcome.kind === "idle") {
          await waker.wait(config.loopDelayMs, stop.signal);
        } else {
          batches++;
          if (outcome.kind === "applied") changes += outcome.changes;
          log.debug({ batch: outcome.batch.batchId, tick: outcome.batch.tickId, kind: outcome.kind }, "batch done");
        }
      } catch (error) {
        log.error({ err: error, retryInMs: backoffMs }, "replay failed; retrying");
        await lock.close();
        await waker.wait(backoffMs, stop.signal);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  } finally {
    process.off("SIGINT", onStop);
    process.off("SIGTERM", onStop);
    notices?.unsubscribe();
    await nc?.drain().catch(() => {});
    await lock.close();
    await provider.end().catch(() => {});
    await subscriber.end().catch(() => {});
    releasePidfile();
    log.info({ batches, changes }, "replay stopped");
  }
  return 0;
}
