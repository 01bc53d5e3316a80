/**
 * Whether a queue's ticker looks alive, from the queue's own figures: a
 * running ticker ticks at least every ticker_idle_period even when no
 * event arrives, so a last tick much older than that means no ticker runs
 * (or it cannot reach the database). Without this, a dead ticker only
 * shows as a lag that keeps growing while "pending events" stays 0, since
 * events wait in no batch until a tick closes one. Pure.
 */
import type { QueueInfo } from "./types.ts";

/** Slack above ticker_idle_period before a missing tick is reported: the ticker's poll and a busy host. */
const MIN_SLACK_SECONDS = 5;

/** The warning for a queue whose ticks stopped, or null when it ticks (or has not been ticked yet). */
export function tickerWarning(queue: Pick<QueueInfo, "queueName" | "tickerLagSeconds" | "tickerIdlePeriodSeconds" | "tickerPaused">): string | null {
  const lag = queue.tickerLagSeconds;
  if (lag === null) return null;
  const limit = queue.tickerIdlePeriodSeconds + Math.max(queue.tickerIdlePeriodSeconds, MIN_SLACK_SECONDS);
  if (lag <= limit) return null;
  const seconds = Math.floor(lag);
  if (queue.tickerPaused) return `no tick for ${seconds} s: ticking is paused for queue ${queue.queueName} (pgqadm CONFIG config ${queue.queueName} ticker_paused=false resumes it)`;
  return `no tick for ${seconds} s: is the ticker running?`;
}
