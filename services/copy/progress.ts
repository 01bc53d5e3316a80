/**
 * Copy progress: rows, bytes, MB/s and an ETA (from the provider's
 * pg_class.reltuples estimate), every ~2 s while rows flow and once at the
 * end: published as JSON on `<prefix>.londiste.<job>.copy.progress.<table
 * token>`, logged, and written to the table's copy_progress column (from
 * the pool, not the copy's transaction, so `subscriber tables`/status can
 * show it meanwhile). The worker's metrics follow the rows through the
 * context's progressHooks, if any (services/copy/metrics.ts).
 */
import { subjectToken } from "../../shared/config/common-keys.ts";
import { londisteSubjects } from "../../shared/config/londiste.ts";
import type { CopyContext } from "./context.ts";

export interface CopyProgressReport {
  table: string;
  worker: string;
  phase: "copying" | "done";
  rows: number;
  bytes: number;
  /** Seconds the rows took to stream. */
  elapsed_s: number;
  /** done: seconds from the start of the COPY to the commit (index rebuild, ANALYZE, fence tick included). */
  total_s?: number;
  rows_per_s: number;
  mb_per_s: number;
  /** The provider's estimate of the table's rows (pg_class.reltuples), null when unknown. */
  estimated_rows: number | null;
  /** Seconds left at the current speed, null when unknown. */
  eta_s: number | null;
  time: string;
}

export const PROGRESS_INTERVAL_MS = 2000;

/** What is told about the rows of a copy while they stream (the worker's metrics). */
export interface CopyProgressHooks {
  /** The rows of `table` start streaming; `now` reports the figures so far at any time until ended(). */
  started(table: string, now: () => Pick<CopyProgressReport, "rows" | "bytes" | "mb_per_s" | "eta_s">): void;
  /** A chunk of `rows` rows, `bytes` bytes (COPY text format) passed. */
  chunk(table: string, bytes: number, rows: number): void;
  /** The rows stopped streaming: all in, or the copy failed. */
  ended(table: string): void;
}

export class CopyProgress {
  rows = 0;
  bytes = 0;
  private readonly startedAt = Date.now();
  private endedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private writing = false;

  constructor(
    private readonly ctx: CopyContext,
    private readonly table: string,
    private readonly estimatedRows: number | null,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.report("copying"), PROGRESS_INTERVAL_MS);
    this.ctx.progressHooks?.started(this.table, () => this.snapshot("copying"));
  }

  add(bytes: number, rows: number): void {
    this.bytes += bytes;
    this.rows += rows;
    this.ctx.progressHooks?.chunk(this.table, bytes, rows);
  }

  snapshot(phase: CopyProgressReport["phase"]): CopyProgressReport {
    const elapsed = ((this.endedAt ?? Date.now()) - this.startedAt) / 1000;
    const rowsPerS = elapsed > 0 ? this.rows / elapsed : 0;
    const left = this.estimatedRows === null ? null : Math.max(0, this.estimatedRows - this.rows);
    return {
      table: this.table,
      worker: this.ctx.me,
      phase,
      rows: this.rows,
      bytes: this.bytes,
      elapsed_s: round(elapsed),
      rows_per_s: Math.round(rowsPerS),
      mb_per_s: round(elapsed > 0 ? this.bytes / 1e6 / elapsed : 0),
      estimated_rows: this.estimatedRows,
      eta_s: phase === "done" ? 0 : left === null || rowsPerS === 0 ? null : round(left / rowsPerS),
      ...(phase === "done" ? { total_s: round((Date.now() - this.startedAt) / 1000) } : {}),
      time: new Date().toISOString(),
    };
  }

  /** Publishes, logs and stores one report. */
  report(phase: CopyProgressReport["phase"]): CopyProgressReport {
    const r = this.snapshot(phase);
    const { config } = this.ctx;
    this.ctx.publish(londisteSubjects(config.subjectPrefix, config.jobName).copyProgress(subjectToken(this.table)), r);
    this.ctx.log.info({ ...r, worker: undefined }, phase === "done" ? "copy finished: rows in place" : "copy progress");
    if (!this.writing) {
      this.writing = true;
      this.ctx.subscriber
        .query("update londiste.subscriber_table set copy_progress = $3 where queue_name = $1 and table_name = $2", [
          config.queue,
          this.table,
          JSON.stringify(r),
        ])
        .catch((error: unknown) => this.ctx.log.debug({ err: error }, "could not store the copy progress"))
        .finally(() => (this.writing = false));
    }
    return r;
  }

  /** The rows are in: no more periodic reports; the speed is the streaming speed from now on. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.endedAt !== undefined) return;
    this.endedAt = Date.now();
    this.ctx.progressHooks?.ended(this.table);
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
