/**
 * Which tables this worker serves: up to parallel_copies at once. It
 * looks for tables in a copy state whose lease is free or expired at
 * start, every ~2 s, when a copy request arrives (NATS queue group
 * `londiste-<job>-copy`: one worker of the pool is told) and when one of
 * its own tables is done, and claims them one by one (claimTable: whoever
 * updates the row first has it).
 */
import { isNotInstalledError } from "../../shared/db/failure.ts";
import type { CopyContext } from "./context.ts";
import { claimableTables, claimTable } from "./lease.ts";
import { serveTable } from "./table-worker.ts";
import { Wakeup } from "./wakeup.ts";

export const SCAN_INTERVAL_MS = 2000;

export class CopyScheduler {
  private readonly active = new Map<string, Promise<void>>();
  private readonly wakeup = new Wakeup();
  private lastError = "";

  constructor(
    private readonly ctx: CopyContext,
    private readonly stop: AbortSignal,
  ) {}

  /** Look for work now (a copy request arrived). */
  wake(): void {
    this.wakeup.notify();
  }

  get tables(): string[] {
    return [...this.active.keys()];
  }

  /** Claims free tables up to the limit; returns the tables claimed. */
  async scan(): Promise<string[]> {
    const { queue, parallelCopies, copyLeaseMs } = this.ctx.config;
    if (this.active.size >= parallelCopies) return [];
    const claimed: string[] = [];
    for (const table of await claimableTables(this.ctx.subscriber, queue, this.ctx.me)) {
      if (this.active.size >= parallelCopies || this.stop.aborted) break;
      if (this.active.has(table)) continue;
      if (!(await claimTable(this.ctx.subscriber, queue, table, this.ctx.me, copyLeaseMs))) continue;
      claimed.push(table);
      const work = serveTable(this.ctx, table, this.stop)
        .catch((error: unknown) => this.ctx.log.error({ table, err: error }, "table worker failed"))
        .finally(() => {
          this.active.delete(table);
          this.wakeup.notify();
        });
      this.active.set(table, work);
    }
    return claimed;
  }

  /** Scans until stopped, then waits for the table workers to wind down. */
  async run(): Promise<void> {
    while (!this.stop.aborted) {
      try {
        await this.scan();
        this.lastError = "";
      } catch (error) {
        const message = (error as Error).message ?? String(error);
        if (message !== this.lastError) {
          if (isNotInstalledError(error)) this.ctx.log.info("waiting for londiste on the subscriber (subscriber install)");
          else this.ctx.log.error({ err: error }, "looking for tables to copy failed; retrying");
        }
        this.lastError = message;
      }
      await this.wakeup.wait(SCAN_INTERVAL_MS, this.stop);
    }
    await Promise.all(this.active.values());
  }
}
