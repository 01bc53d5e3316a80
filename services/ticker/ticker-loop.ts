/**
 * The ticker's life: stand by until this instance holds the database's
 * ticker lock, then tick every loop_delay and run maintenance every
 * maint_delay on the lock's own connection, so losing the connection means
 * losing the lock. Database errors are logged and retried with backoff;
 * the loop only ends when its signal aborts, between units of work.
 */
import { SessionLock } from "../../shared/db/session-lock.ts";
import type { Logger } from "../../shared/log.ts";
import type { TickerConfig } from "../../shared/config/pgqadm.ts";
import { ADVISORY_LOCKS } from "../../shared/db/advisory-locks.ts";
import { isNotInstalledError } from "../../shared/db/failure.ts";
import { sleep } from "../../shared/sleep.ts";
import { type MaintenanceReport, runMaintenance } from "./maintenance.ts";
import { type TickResult, tickDueQueues } from "./ticking.ts";

/** pg_try_advisory_lock keys of "the active ticker of this database". */
export const TICKER_LOCK_KEY = [ADVISORY_LOCKS.activeTicker.classId, 0] as const;

export type TickerState = "starting" | "standby" | "active" | "retrying" | "stopped";

export interface TickerEvents {
  onTicks(results: TickResult[]): void;
  onMaintenance(report: MaintenanceReport): void;
  onError(error: unknown): void;
  onState(state: TickerState): void;
}

export class TickerLoop {
  state: TickerState = "starting";
  lastMaintenance: { at: Date; report: MaintenanceReport } | undefined;
  readonly ticksByQueue = new Map<string, number>();
  private readonly failureLoggedAt = new Map<string, number>();

  constructor(
    private config: TickerConfig,
    private readonly log: Logger,
    private readonly events: TickerEvents,
  ) {}

  /** New settings from a reload; the database cannot change without a restart. */
  reconfigure(config: TickerConfig): void {
    if (JSON.stringify(config.db) !== JSON.stringify(this.config.db)) {
      this.log.warn("db changed in config: restart the ticker to use the new database");
      config = { ...config, db: this.config.db };
    }
    this.config = config;
  }

  private setState(state: TickerState) {
    if (state === this.state) return;
    this.state = state;
    this.events.onState(state);
  }

  async run(signal: AbortSignal): Promise<void> {
    const lock = new SessionLock(this.config.db, TICKER_LOCK_KEY, "PgQ");
    let backoffMs = 1000;
    try {
      while (!signal.aborted) {
        try {
          if (!(await lock.tryAcquire())) {
            if (this.state !== "standby") this.log.info("standing by: another ticker is active on this database");
            this.setState("standby");
            await sleep(this.config.standbyDelayMs, signal);
            continue;
          }
          this.log.info("active: this instance ticks the database");
          this.setState("active");
          backoffMs = 1000;
          await this.tickUntilStopped(lock, signal);
        } catch (error) {
          this.events.onError(error);
          this.log.error({ err: error, retryInMs: backoffMs }, "ticker database error; reconnecting");
          this.setState("retrying");
          await lock.close();
          await sleep(backoffMs, signal);
          backoffMs = Math.min(backoffMs * 2, 30_000);
        }
      }
    } finally {
      await lock.close();
      this.setState("stopped");
    }
  }

  private async tickUntilStopped(lock: SessionLock, signal: AbortSignal): Promise<void> {
    let nextMaintenance = 0;
    let nextStatsLog = Date.now() + this.config.logStatsMs;
    let ticksSinceLog = 0;
    let waitingForInstall = false;
    while (!signal.aborted) {
      let round;
      try {
        round = await tickDueQueues(lock.connection);
      } catch (error) {
        // No pgq schema yet is not an error of the ticker: wait for the install, quietly.
        if (!isNotInstalledError(error)) throw error;
        if (!waitingForInstall) this.log.info("PgQ is not installed in this database yet: waiting (pgqadm CONFIG install)");
        waitingForInstall = true;
        await sleep(this.config.loopDelayMs, signal);
        continue;
      }
      if (waitingForInstall) this.log.info("PgQ is installed: ticking");
      waitingForInstall = false;
      const results = round.ticks;
      for (const failure of round.failures) {
        this.events.onError(new Error(failure.message));
        // Once a minute per queue is enough to be seen without flooding the log.
        const last = this.failureLoggedAt.get(failure.queue) ?? 0;
        if (Date.now() - last >= 60_000) {
          this.failureLoggedAt.set(failure.queue, Date.now());
          this.log.error({ queue: failure.queue, error: failure.message }, "tick failed for this queue");
        }
      }
      for (const r of results) this.ticksByQueue.set(r.queue, (this.ticksByQueue.get(r.queue) ?? 0) + 1);
      ticksSinceLog += results.length;
      if (results.length > 0) this.events.onTicks(results);

      if (Date.now() >= nextMaintenance) {
        const report = await runMaintenance(lock.connection);
        this.lastMaintenance = { at: new Date(), report };
        this.events.onMaintenance(report);
        this.log.info({ rotated: report.rotated, retries_moved: report.retriesMoved }, "maintenance done");
        nextMaintenance = Date.now() + this.config.maintDelayMs;
      }
      if (Date.now() >= nextStatsLog) {
        this.log.info({ ticks: ticksSinceLog, duration: this.config.logStatsMs / 1000 }, "ticker stats");
        ticksSinceLog = 0;
        nextStatsLog = Date.now() + this.config.logStatsMs;
      }
      await sleep(this.config.loopDelayMs, signal);
    }
  }
}
