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
import { hostname } from "node:os";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import pg from "pg";
import { startCommandService } from "../../shared/bus/command-service.ts";
import { connectNats } from "../../shared/bus/connect.ts";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { SessionLock } from "../../shared/db/session-lock.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { LONDISTE_SCHEMA_VERSION, londisteSchemaVersion } from "../../shared/londiste/install.ts";
import { startService } from "../../shared/service-start.ts";
import { registerConsumer } from "../../shared/pgq/index.ts";
import { VERSION } from "../../shared/version.ts";
import type { ReplayLiveState } from "./admin/context.ts";
import { londisteAdminCommands } from "./admin-commands.ts";
import { type ApplyChanges, replayOneBatch } from "./replay-batch.ts";
import { ADVISORY_LOCKS } from "../../shared/db/advisory-locks.ts";
import { SyncConflict } from "../../shared/londiste/sync-store.ts";
import { ensureStateStream, relayOutbox } from "../../shared/londiste/state-events.ts";

/** pg_try_advisory_lock(REPLAY_LOCK_CLASS, hash(job)) on the subscriber: the active replay of a job. */
export const REPLAY_LOCK_CLASS = ADVISORY_LOCKS.activeReplay.classId;

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

export interface ReplayOptions {
  /** Forget the subscriber's recorded position first (after a deliberate re-registration). */
  reset?: boolean;
}

/**
 * Whether replay has anything to follow: without tables or sequences in
 * the subscriber's set it does not register, so no events pile up for it.
 */
async function hasWork(subscriber: pg.Pool, queue: string): Promise<boolean | "upgrade"> {
  const version = await londisteSchemaVersion(subscriber);
  if (version === 0) return false;
  if (version < LONDISTE_SCHEMA_VERSION) return "upgrade";
  const { rows } = await subscriber.query(
    `select 1 from londiste.subscriber_table where queue_name = $1
      union all select 1 from londiste.subscriber_seq where queue_name = $1 limit 1`,
    [queue],
  );
  return rows.length > 0;
}

export async function runReplayService(configPath: string, options: ReplayOptions = {}): Promise<number> {
  const started = startService("replay", () => loadLondisteConfig(configPath));
  if ("exitCode" in started) return started.exitCode;
  const { config, log, releasePidfile } = started;

  const stop = new AbortController();
  const waker = new Waker();
  const provider = new pg.Pool({ ...config.provider, max: 3, application_name: `londiste ${config.jobName} replay` });
  const subscriber = new pg.Pool({ ...config.subscriber, max: 3, application_name: `londiste ${config.jobName} replay` });
  provider.on("error", (error) => log.warn({ err: error }, "idle provider connection failed"));
  subscriber.on("error", (error) => log.warn({ err: error }, "idle subscriber connection failed"));

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  const live: ReplayLiveState = { role: "starting", batches: 0, changes: 0, lastBatchAt: null, lastError: null };
  const instance = `${hostname()}:${process.pid}`;
  let nc: NatsConnection | undefined;
  let notices: Subscription | undefined;
  let service: Service | undefined;
  void connectNats(natsSettingsFrom(config.values, `londiste ${config.jobName} replay`), log)
    .then(async (conn) => {
      if (stop.signal.aborted) return conn.close();
      nc = conn;
      notices = conn.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), { callback: () => waker.notify() });
      log.info("waking on tick notices");
      service = await startCommandService(conn, {
        name: "londiste-replay",
        version: VERSION,
        description: `londiste replay and admin commands for job ${config.jobName}`,
        subjectPrefix: subjects.commandPrefix,
        commands: londisteAdminCommands({
          provider,
          subscriber,
          queue: config.queue,
          consumer: config.consumer,
          jobName: config.jobName,
          wake: () => waker.notify(),
          live: () => ({ ...live, instance }),
        }),
        metadata: { job: config.jobName, instance },
        queue: `londiste-${config.jobName}`,
        log,
        stats: () => ({ instance, ...live }),
      });
      log.info({ subjects: `${subjects.commandPrefix}.>` }, "serving admin commands on NATS");
      const stream = await ensureStateStream(conn, config.subjectPrefix, config.jobName);
      log.info({ stream }, "relaying table state changes to JetStream");
      startRelay(conn);
    })
    .catch((error: unknown) => log.error({ err: error }, "NATS setup failed; polling every loop_delay, no admin commands"));

  // The outbox relay: every second, and until the backlog is gone (it survives NATS and database outages).
  let relayTimer: NodeJS.Timeout | undefined;
  let relayFailedAt = 0;
  const startRelay = (conn: NatsConnection) => {
    let running = false;
    relayTimer = setInterval(() => {
      if (running || stop.signal.aborted) return;
      running = true;
      void (async () => {
        try {
          while ((await relayOutbox(subscriber, conn, config.subjectPrefix, config.jobName, config.queue)) > 0);
        } catch (error) {
          // Undefined table: londiste not installed yet. Anything else is worth a line, once a minute.
          if ((error as { code?: string }).code !== "42P01" && Date.now() - relayFailedAt > 60_000) {
            relayFailedAt = Date.now();
            log.warn({ err: error }, "relaying state changes failed; retrying");
          }
        } finally {
          running = false;
        }
      })();
    }, 1000);
  };

  const onStop = (signal: string) => {
    log.info({ signal }, "stopping between batches");
    stop.abort();
  };
  process.on("SIGINT", onStop);
  process.on("SIGTERM", onStop);

  const lock = new SessionLock(config.subscriber, [REPLAY_LOCK_CLASS, jobLockKey(config.jobName)]);
  const settings = {
    queue: config.queue,
    consumer: config.consumer,
    ignoreTruncate: config.ignoreTruncate,
    onTableError: (table: string, message: string) => log.error({ table, error: message }, "table stopped: state error"),
    onNotice: (message: string, details: Record<string, unknown>) => log.warn(details, message),
  };
  const apply: ApplyChanges = async (client, changes, destTable) => {
    const report = await applyChanges(client, changes, {
      destTable,
      onMissingRow: config.onMissingRow,
      log: (msg, details) => log.warn(details, msg),
    });
    if (report.missedTotal > 0) log.warn({ missed: report.missedTotal }, "updates/deletes that found no row");
  };

  let registered = false;
  let idleReason = "";
  let resetPending = options.reset === true;
  let backoffMs = 1000;
  log.info({ queue: config.queue, consumer: config.consumer }, "replay starting");
  const idle = async (reason: string) => {
    if (idleReason !== reason) log.info(reason);
    idleReason = reason;
    await waker.wait(config.loopDelayMs, stop.signal);
  };
  try {
    while (!stop.signal.aborted) {
      try {
        if (!(await lock.tryAcquire())) {
          if (live.role !== "standby") log.info("standing by: another replay of this job is active");
          live.role = "standby";
          await waker.wait(1000, stop.signal);
          continue;
        }
        if (live.role !== "active") log.info("active: this instance replays the job");
        live.role = "active";
        if (resetPending) {
          await subscriber.query("select londiste.set_last_tick($1, null)", [config.consumer]);
          log.warn({ consumer: config.consumer }, "--reset: forgot the subscriber's recorded position");
          resetPending = false;
        }
        if (!registered) {
          const work = await hasWork(subscriber, config.queue);
          if (work === "upgrade") {
            await idle(`the londiste schema on the subscriber is older than this replay (${LONDISTE_SCHEMA_VERSION}): run "londiste CONFIG subscriber install" to upgrade it`);
            continue;
          }
          if (!work) {
            await idle("nothing to replay yet: waiting for tables (londiste CONFIG subscriber add)");
            continue;
          }
          await registerConsumer(provider, config.queue, config.consumer);
          registered = true;
        }
        const outcome = await replayOneBatch(provider, subscriber, settings, apply);
        backoffMs = 1000;
        live.lastError = null;
        if (outcome.kind !== "skipped" && outcome.copyRequested.length > 0) {
          log.info({ tables: outcome.copyRequested }, "tables waiting for a copy: in-copy");
          for (const table of outcome.copyRequested) nc?.publish(subjects.copyRequest, JSON.stringify({ table }));
        }
        if (outcome.kind === "idle") {
          await idle(outcome.held ? "held at this tick for a consistent read (compare/repair)" : "caught up: waiting for the next tick");
        } else {
          idleReason = "";
          live.batches++;
          live.lastBatchAt = new Date().toISOString();
          if (outcome.kind === "applied") live.changes += outcome.changes;
          log.debug({ batch: outcome.batch.batchId, tick: outcome.batch.tickId, kind: outcome.kind }, "batch done");
        }
      } catch (error) {
        if (error instanceof SyncConflict) {
          // Another actor moved a table's state meanwhile: decide again at once.
          log.debug({ table: error.table }, "table state changed meanwhile; retrying the round");
          continue;
        }
        live.lastError = (error as Error).message ?? String(error);
        log.error({ err: error, retryInMs: backoffMs }, "replay failed; retrying");
        registered = false;
        idleReason = "";
        await lock.close();
        await waker.wait(backoffMs, stop.signal);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  } finally {
    process.off("SIGINT", onStop);
    process.off("SIGTERM", onStop);
    if (relayTimer) clearInterval(relayTimer);
    notices?.unsubscribe();
    await service?.stop().catch(() => {});
    await nc?.drain().catch(() => {});
    await lock.close();
    await provider.end().catch(() => {});
    await subscriber.end().catch(() => {});
    releasePidfile();
    log.info({ batches: live.batches, changes: live.changes }, "replay stopped");
  }
  return 0;
}
