/** What the repair worker's commands share: pools, the job, logging, progress. */
import type pg from "pg";
import type { Logger } from "../../shared/log.ts";

export interface RepairContext {
  /** Pools whose connections run under the pinned settings (shared/londiste/compare/settings.ts). */
  provider: pg.Pool;
  subscriber: pg.Pool;
  queue: string;
  consumer: string;
  jobName: string;
  log: Logger;
  /** Identifies this worker (host:pid). */
  instance: string;
  /** Publishes a progress report of the current request (no-op without NATS). */
  progress: (report: Record<string, unknown>) => void;
  /** Wakes replay at once (a tick notice on NATS) instead of at its next poll. */
  notifyTick: (tick: number) => void;
  /** The worker's repair_dir (absolute): fix files go only there (read at each request: a reload may change it). */
  repairDir: () => string;
  /** Aborted when the worker stops. */
  signal: AbortSignal;
}
