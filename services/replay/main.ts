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
import type pg from "pg";
import { serviceRuns, startCommandService } from "../../shared/bus/command-service.ts";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { type LondisteConfig, loadLondisteConfig, londisteSubjects, londisteUnknownCommands } from "../../shared/config/londiste.ts";
import { SessionLock, SessionLockLost } from "../../shared/db/session-lock.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { LONDISTE_SCHEMA_VERSION, londisteSchemaVersion } from "../../shared/londiste/install.ts";
import { runService, type ServiceShell } from "../../shared/service-shell.ts";
import { PgqError } from "../../shared/pgq/index.ts";
import { registerUnlessUnregistered, unregisteredSince } from "../../shared/londiste/subscriber-registration.ts";
import { VERSION } from "../../shared/version.ts";
import type { ReplayLiveState } from "./admin/context.ts";
import { londisteAdminCommands } from "./admin-commands.ts";
import { type AppliedCount, type ApplyChanges, replayOneBatch } from "./replay-batch.ts";
import { ADVISORY_LOCKS } from "../../shared/db/advisory-locks.ts";
import { hasTableSyncs, SyncConflict } from "../../shared/londiste/sync-store.ts";
import { subscriberSeqs } from "../../shared/londiste/catalog.ts";
import { recordTick } from "../../shared/londiste/position.ts";
import { startOutboxRelay } from "../../shared/londiste/outbox-relay.ts";
import { deleteStateStream, stateStreamName } from "../../shared/londiste/state-events.ts";
import { failureKind } from "../../shared/db/failure.ts";
import { replayMetrics, replayScrapeSources } from "./metrics.ts";

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

const UNREGISTERED_IDLE =
  'unregistered by the operator (londiste CONFIG subscriber unregister): nothing is replayed until "londiste CONFIG subscriber register"';

/** Whether the operator unregistered the consumer (false when that cannot be read now: the error path retries anyway). */
async function operatorUnregistered(subscriber: pg.Pool, consumer: string): Promise<boolean> {
  return (await unregisteredSince(subscriber, consumer).catch(() => null)) !== null;
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
  return (await hasTableSyncs(subscriber, queue)) || (await subscriberSeqs(subscriber, queue)).length > 0;
}

export async function runReplayService(configPath: string, options: ReplayOptions = {}): Promise<number> {
  const live: ReplayLiveState = { role: "starting", batches: 0, changes: 0, lastBatchAt: null, lastError: null, unregistered: false };
  return runService({
    kind: "replay",
    load: () => loadLondisteConfig(configPath),
    stopping: "stopping between batches",
    body: (shell) => replayBody(shell, live, options),
    summary: () => ({ batches: live.batches, changes: live.changes }),
  });
}

async function replayBody(shell: ServiceShell<LondisteConfig>, live: ReplayLiveState, options: ReplayOptions): Promise<number> {
  const { config, log, instance } = shell;
  const stop = { signal: shell.stopSignal };
  const waker = new Waker();
  const provider = shell.pool("provider", { ...config.provider, max: 3, application_name: `londiste ${config.jobName} replay` });
  const subscriber = shell.pool("subscriber", { ...config.subscriber, max: 3, application_name: `londiste ${config.jobName} replay` });

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  shell.connectNatsInBackground(
    `londiste ${config.jobName} replay`,
    async (conn) => {
      const notices = conn.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), { callback: () => waker.notify() });
      shell.atExit(() => notices.unsubscribe());
      log.info("waking on tick notices");
      const service = await startCommandService(conn, {
        name: "londiste-replay",
        version: VERSION,
        description: `londiste replay and admin commands for job ${config.jobName}`,
        subjectPrefix: subjects.commandPrefix,
        commands: {
          ...londisteAdminCommands({
            provider,
            subscriber,
            queue: config.queue,
            consumer: config.consumer,
            jobName: config.jobName,
            wake: () => waker.notify(),
            live: () => ({ ...live, instance }),
            deleteStateStream: async () => ({
              stream: stateStreamName(config.subjectPrefix, config.jobName),
              deleted: await deleteStateStream(conn, config.subjectPrefix, config.jobName),
            }),
          }),
          ...shell.controlCommands(() => ({ service: "replay", role: live.role })),
        },
        metadata: { job: config.jobName, instance },
        queue: `londiste-${config.jobName}`,
        // compare and repair belong to the repair workers: when none runs, the requester hears so.
        unknownCommands: {
          ...londisteUnknownCommands(config.jobName),
          ownerRuns: () => serviceRuns(conn, "londiste-repair", { job: config.jobName }),
        },
        log,
        stats: () => ({ instance, ...live }),
      });
      shell.atExit(() => service.stop());
      log.info({ subjects: `${subjects.commandPrefix}.>` }, "serving admin commands on NATS");
      shell.atExit(
        startOutboxRelay({
          subscriber,
          nc: conn,
          prefix: config.subjectPrefix,
          job: config.jobName,
          queue: config.queue,
          log,
          replicas: config.stateStreamReplicas,
        }),
      );
    },
    "polling every loop_delay, no admin commands",
  );

  const metrics = replayMetrics(shell.metrics, replayScrapeSources({ provider, subscriber, queue: config.queue, consumer: config.consumer }));
  const lock = new SessionLock(config.subscriber, [REPLAY_LOCK_CLASS, jobLockKey(config.jobName)], "subscriber");
  const settings = {
    queue: config.queue,
    consumer: config.consumer,
    ignoreTruncate: config.ignoreTruncate,
    onApplied: (c: AppliedCount) => {
      metrics.applied(c.table, c.op, c.n);
      if (c.missed > 0) metrics.missed(c.table, c.op, c.missed);
    },
    onTableError: (table: string, message: string) => log.error({ table, error: message }, "table stopped: state error"),
    onNotice: (message: string, details: Record<string, unknown>) => log.warn(details, message),
    // The fence (docs/protocols.md, "Replay: one active instance"): nothing commits unless this
    // instance's lock session still holds the active lock on the server.
    fence: (sub: pg.ClientBase) => lock.assertHeld(sub, "lost the active-replay lock"),
  };
  const apply: ApplyChanges = async (client, changes, destTable, shapes) => {
    const report = await applyChanges(client, changes, {
      destTable,
      shapes,
      onMissingRow: config.onMissingRow,
      log: (msg, details) => log.warn(details, msg),
    });
    if (report.missedTotal > 0) log.warn({ missed: report.missedTotal }, "updates/deletes that found no row");
    return report;
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
          await recordTick(subscriber, config.consumer, null);
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
          if ((await registerUnlessUnregistered(subscriber, provider, config.queue, config.consumer)) !== null) {
            live.unregistered = true;
            await idle(UNREGISTERED_IDLE);
            continue;
          }
          live.unregistered = false;
          registered = true;
        }
        const batchStarted = performance.now();
        const outcome = await replayOneBatch(provider, subscriber, settings, apply);
        if (outcome.kind === "applied") {
          metrics.batchApplied((performance.now() - batchStarted) / 1000);
          for (let i = 0; i < outcome.tableErrors.length; i++) metrics.error("data");
        }
        backoffMs = 1000;
        live.lastError = null;
        if (outcome.kind !== "skipped" && outcome.copyRequested.length > 0) {
          log.info({ tables: outcome.copyRequested }, "tables waiting for a copy: in-copy");
          for (const table of outcome.copyRequested) shell.nats?.publish(subjects.copyRequest, JSON.stringify({ table }));
        }
        if (outcome.kind === "idle") {
          await idle(outcome.held ? "held at this tick for a consistent read (compare/repair)" : "caught up: waiting for the next tick");
        } else {
          idleReason = "";
          live.batches++;
          live.lastBatchAt = new Date().toISOString();
          if (outcome.kind === "applied") live.changes += outcome.changes;
          // Where the batch's time went (ms), for profiling a catch-up (the benchmark reads these lines).
          const phases = Object.fromEntries(Object.entries(outcome.phases).map(([k, v]) => [k, Math.round(v * 10) / 10]));
          log.debug(
            {
              batch: outcome.batch.batchId,
              tick: outcome.batch.tickId,
              ticks: outcome.batch.tickId - outcome.batch.prevTickId,
              kind: outcome.kind,
              changes: outcome.kind === "applied" ? outcome.changes : 0,
              phases,
            },
            "batch done",
          );
        }
      } catch (error) {
        if (error instanceof SessionLockLost) {
          // Paused or cut off long enough for the server to end the lock session: another replay
          // may be active. The round was rolled back; stand by (or take the lock again if it is free).
          log.warn({ err: error }, "lost the active-replay lock: round rolled back, nothing of it applied");
          live.role = "starting";
          registered = false;
          await lock.close();
          continue;
        }
        if (error instanceof SyncConflict) {
          // Another actor moved a table's state meanwhile: decide again at once.
          log.debug({ table: error.table }, "table state changed meanwhile; retrying the round");
          continue;
        }
        if (error instanceof PgqError && error.kind === "consumer_not_registered" && (await operatorUnregistered(subscriber, config.consumer))) {
          // `subscriber unregister` while a round was starting: not a failure, and not to be undone.
          registered = false;
          continue;
        }
        live.lastError = (error as Error).message ?? String(error);
        metrics.error(failureKind(error));
        // Whatever failed, the batch was rolled back whole and is retried: a lost connection comes back, a missing
        // privilege waits for its GRANT (the message names it); data errors stopped only their table, inside the batch.
        log.error({ err: error, kind: failureKind(error), retryInMs: backoffMs }, "replay failed; retrying");
        registered = false;
        idleReason = "";
        await lock.close();
        await waker.wait(backoffMs, stop.signal);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  } finally {
    await lock.close();
  }
  return 0;
}
