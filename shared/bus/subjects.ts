/**
 * NATS subjects shared by more than one program. Every subject starts with
 * the configured prefix (default "skytools").
 */
import { subjectToken } from "../config/common-keys.ts";

/**
 * Published by the ticker after each tick of a queue; consumers wake on it
 * instead of waiting for their poll. Payload: TickNotice. Queue names
 * reduced to one subject token may collide; a spurious wake-up only makes
 * a consumer look for a batch early.
 */
export function tickNoticeSubject(prefix: string, queue: string): string {
  return `${prefix}.pgq.tick.${subjectToken(queue)}`;
}

export interface TickNotice {
  queue: string;
  tick_id: number;
  /** ISO time of the tick. */
  time: string;
  /** Database name the queue lives in. */
  database: string | undefined;
}
