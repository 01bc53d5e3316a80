/**
 * One claimed table, from whatever copy state it is in to the end of the
 * copy's part: re-read the state before every step and do that state's
 * work (the copy side of the state table in docs/protocols.md, "Initial
 * copy and the handover to replay"):
 *   in-copy     → initial-copy.ts (→ catching-up)
 *   catching-up → catch-up.ts, batch after batch, then the handover offer
 *                 (→ wanna-sync:T)
 *   wanna-sync  → wait for replay (→ do-sync:T)
 *   do-sync     → finish.ts (→ ok)
 * Any other state (ok, error, (none) after a resync, removed) ends the
 * work, and the copy consumer is dropped. The lease heartbeats meanwhile;
 * losing it, or the service stopping, aborts the step (rolled back).
 */
import { failureKind, isDataError } from "../../shared/db/failure.ts";
import { isCopyState } from "../../shared/londiste/sync-machine.ts";
import { SyncConflict, loadTableSync } from "../../shared/londiste/sync-store.ts";
import { sleep } from "../../shared/sleep.ts";
import { catchUpOnce } from "./catch-up.ts";
import type { CopyContext } from "./context.ts";
import { dropCopyConsumer } from "./copy-consumer.ts";
import { messageOf, StepAbandoned } from "./errors.ts";
import { failTable, finishTable } from "./finish.ts";
import { copyTable } from "./initial-copy.ts";
import { Lease } from "./lease.ts";

const MAX_BACKOFF_MS = 30_000;
const WANNA_SYNC_POLL_MS = 25;

export async function serveTable(ctx: CopyContext, tableName: string, stop: AbortSignal): Promise<void> {
  const { queue } = ctx.config;
  const log = ctx.log.child({ table: tableName });
  const lease = new Lease(ctx.subscriber, queue, tableName, ctx.me, ctx.config.copyLeaseMs, log);
  lease.start();
  const signal = AbortSignal.any([stop, lease.signal]);
  let backoffMs = 1000;
  /** The state whose step runs (for the log). */
  let state = "";
  let waitingFor = "";
  /** The last handover offer found replay ahead of the copy. */
  let behind = false;
  const waitOnce = async (reason: string, ms = ctx.config.loopDelayMs) => {
    if (waitingFor !== reason) log.info(reason);
    waitingFor = reason;
    await ctx.ticks.wait(ms, signal);
  };
  log.info("claimed");
  try {
    while (!signal.aborted) {
      try {
        const table = await loadTableSync(ctx.subscriber, queue, tableName);
        if (!table || !isCopyState(table.sync.state)) break;
        state = table.sync.state;
        if (table.leaseOwner !== ctx.me) {
          log.info({ owner: table.leaseOwner }, "the table has another copy worker now");
          break;
        }
        switch (table.sync.state) {
          case "in-copy":
            waitingFor = "";
            await copyTable(ctx, table, signal);
            break;
          case "catching-up": {
            const step = await catchUpOnce(ctx, table, signal);
            const behindBefore = behind;
            behind = step.kind === "behind";
            if (step.kind === "applied") {
              waitingFor = "";
              log.debug(step, "caught up one batch");
            } else if (step.kind === "handed-over") {
              log.info({ tick: step.tick }, "caught up: wanna-sync, waiting for replay to reach the tick");
            } else if (step.kind === "behind") {
              // Its next batch should be there now; only when the last look already said so, wait (no busy loop).
              if (behindBefore) await waitOnce(`replay at tick ${step.replayTick} is ahead of the copy at ${step.tick}`);
              else log.debug(step, "replay is ahead of the copy: catching up further");
            } else if (step.kind === "wait") {
              await waitOnce(`caught up, not handed over yet: ${step.reason}`);
            }
            break;
          }
          case "wanna-sync":
            // Replay takes over within a round after the next tick; nothing tells the copy, so look often (one row read).
            await waitOnce("waiting for replay to take the table over (wanna-sync)", Math.min(ctx.config.loopDelayMs, WANNA_SYNC_POLL_MS));
            break;
          case "do-sync":
            await finishTable(ctx, tableName);
            break;
        }
        backoffMs = 1000;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof SyncConflict) continue;
        if (error instanceof StepAbandoned) {
          log.info({ reason: error.message }, "step abandoned; looking at the table again");
          if (error.leaseLost) break;
          continue;
        }
        if (isDataError(error)) {
          try {
            await failTable(ctx, tableName, messageOf(error));
          } catch (failError) {
            if (failError instanceof StepAbandoned && failError.leaseLost) break;
            log.error({ err: failError, error: messageOf(error) }, "could not put the table into state error; retrying");
            await sleep(backoffMs, signal);
            backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
          }
          continue;
        }
        // Not the data's fault (a lost connection, a missing privilege, a deadlock): the step was rolled back; the
        // table keeps its state and this worker its lease, and the step runs again from the state as committed.
        log.error({ err: error, state, kind: failureKind(error), retryInMs: backoffMs }, "copy step failed; retrying");
        await sleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      }
    }
  } finally {
    lease.stop();
    // Nothing is left to do for a table that left the copy states: its copy consumer goes too.
    await dropCopyConsumer(ctx, tableName).catch((error: unknown) => log.warn({ err: error }, "could not drop the copy consumer"));
    await lease.release().catch((error: unknown) => log.warn({ err: error }, "could not release the lease"));
    if (stop.aborted) log.info("stopping: work rolled back, lease released");
  }
}
