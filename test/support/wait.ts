/**
 * Waiting in tests without wall-clock deadlines, so the suite holds on a loaded machine:
 *
 *  - waitForProgress: waits while a measured value (a tick, a row count, a state) still
 *    moves; fails only after a long stretch with no change, naming what it waited for and
 *    the last value it saw;
 *  - waitFor: waits for a condition with a bounded time, counted on the machine clock;
 *  - MachineClock: elapsed time scaled by the CPU share a runnable process gets, so a
 *    bound set for an idle machine stretches as far as the machine is slowed down
 *    (e.g. 2 cores with 8 runnable processes: a second counts as a quarter).
 *
 *   await waitForProgress({
 *     what: "the subscriber to reach tick 812",
 *     measure: () => subscriberTick(job),
 *     done: (t) => t !== null && t >= 812,
 *   });
 */
import { readFileSync } from "node:fs";
import { sleep } from "../../shared/sleep.ts";

export { sleep };

// ------------------------------------------------------------------ the machine clock

/** The slowest a clock second may get: 4 wall seconds. Bounds every wait on a starved machine. */
const MIN_SHARE = 0.25;

/** CPUs in /proc/stat: the same view as the run-queue count of /proc/loadavg (not the cgroup's). */
const CPUS = (() => {
  try {
    return Math.max(1, readFileSync("/proc/stat", "utf8").split("\n").filter((l) => /^cpu\d+ /.test(l)).length);
  } catch {
    return 1;
  }
})();

/**
 * The CPU share a runnable process gets right now: cores / runnable processes (the fourth
 * field of /proc/loadavg, `running/total`), at most 1. 1 where /proc is not there.
 */
export function cpuShare(): number {
  try {
    const running = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[3]?.split("/")[0]);
    if (!Number.isFinite(running) || running <= 0) return 1;
    return Math.max(MIN_SHARE, Math.min(1, CPUS / running));
  } catch {
    return 1;
  }
}

/**
 * Elapsed milliseconds since construction, each stretch between two reads counted at the
 * mean CPU share seen at its ends. Read it often (every poll) for a fair measure.
 */
export class MachineClock {
  private readonly startedAt = Date.now();
  private last = this.startedAt;
  private share = cpuShare();
  private total = 0;

  /** Machine time elapsed, in ms. */
  elapsed(): number {
    const now = Date.now();
    const share = cpuShare();
    this.total += ((now - this.last) * (this.share + share)) / 2;
    this.last = now;
    this.share = share;
    return this.total;
  }

  /** Wall time elapsed, in ms (for messages). */
  wall(): number {
    return Date.now() - this.startedAt;
  }

  /** "12.0 s machine time (31.5 s wall)", for messages. */
  describe(): string {
    return `${seconds(this.elapsed())} machine time (${seconds(this.wall())} wall)`;
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Sleeps `ms` of machine time: longer in wall time when the machine is busy. */
export async function machineSleep(ms: number, intervalMs = 100): Promise<void> {
  const clock = new MachineClock();
  for (;;) {
    const left = ms - clock.elapsed();
    if (left <= 0) return;
    await sleep(Math.min(intervalMs, left));
  }
}

// ------------------------------------------------------------------ waits

export interface WaitOptions {
  /** Bound on the wait, in machine time (default 10 s). */
  timeoutMs?: number;
  /** Pause between probes (default 100 ms). */
  intervalMs?: number;
  /** What the wait is for, for the failure message. */
  what?: string;
}

/**
 * Polls `probe` until it returns something truthy (which is returned); fails after
 * `timeoutMs` of machine time. A probe that throws counts as not yet; its last error is reported.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  options: WaitOptions = {},
): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 100, what = "condition" } = options;
  const clock = new MachineClock();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (error) {
      lastError = error;
    }
    if (clock.elapsed() > timeoutMs) {
      throw new Error(
        `timed out after ${clock.describe()} waiting for ${what}` + (lastError ? `; last error: ${(lastError as Error).message}` : ""),
      );
    }
    await sleep(intervalMs);
  }
}

export interface ProgressOptions<T> {
  /** What the wait is for, for the failure message ("the subscriber to record tick 812"). */
  what: string;
  /** Reads the measured value. An error counts as no change; the last one is reported. */
  measure: () => Promise<T> | T;
  /** True when the wait is over. May throw to end the wait at once (e.g. a load generator failed). */
  done: (value: T) => boolean;
  /** Fail after this long (machine time) without the value changing (default 90 s). */
  stallMs?: number;
  /**
   * Fail after this much machine time even while the value moves (default: no limit), for a
   * measure that keeps moving whether or not the awaited thing comes (e.g. ticks under a load).
   */
  limitMs?: number;
  /** Pause between reads (default 100 ms). */
  intervalMs?: number;
  /** What counts as a change: a different key (default: the value's JSON). */
  key?: (value: T) => unknown;
}

/** The default stretch without progress after which a wait fails. */
export const DEFAULT_STALL_MS = 90_000;

/**
 * Waits until `done(measure())`, for as long as the measured value keeps changing: fails
 * only when it stayed the same for `stallMs` of machine time. Returns the final value.
 */
export async function waitForProgress<T>(options: ProgressOptions<T>): Promise<T> {
  const { what, measure, done, stallMs = DEFAULT_STALL_MS, limitMs = Infinity, intervalMs = 100 } = options;
  const keyOf = options.key ?? ((v: T) => v);
  const total = new MachineClock();
  let still = new MachineClock();
  let last: { value: T; key: string } | undefined;
  let changes = 0;
  let lastError: unknown;
  for (;;) {
    let read: { value: T } | undefined;
    try {
      read = { value: await measure() };
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (read) {
      if (done(read.value)) return read.value;
      const key = JSON.stringify(keyOf(read.value));
      if (last === undefined || key !== last.key) {
        if (last !== undefined) changes++;
        last = { value: read.value, key };
        still = new MachineClock();
      }
    }
    const stalled = still.elapsed() > stallMs;
    if (stalled || total.elapsed() > limitMs) {
      throw new Error(
        (stalled ? `no progress for ${still.describe()}` : `not there after ${total.describe()}`) +
          ` waiting for ${what}; last value ${last ? show(last.value) : "(none read)"}` +
          ` (changed ${changes} times in ${total.describe()})` +
          (lastError ? `; last error: ${(lastError as Error).message}` : ""),
      );
    }
    await sleep(intervalMs);
  }
}

function show(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
