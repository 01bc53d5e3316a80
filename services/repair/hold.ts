/**
 * A hold on replay (londiste.replay_hold on the subscriber, one row per
 * consumer): replay applies batches up to the held tick and then waits
 * until the row is deleted or expires. The row is claimed first with a
 * tick that never exists (-1), before the provider side reserves the real
 * tick, so the tick is held before it exists and replay can never pass it
 * unnoticed. While work goes on the expiry is pushed forward; release()
 * deletes the row. A worker that dies leaves a row that expires by itself
 * after holdSeconds: replay is never paused for good.
 */
import type pg from "pg";
import { CommandError } from "../../shared/bus/replies.ts";
import type { Logger } from "../../shared/log.ts";
import { sleep } from "../../shared/sleep.ts";

export const NO_TICK = -1;

export class ReplayHold {
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  tick = NO_TICK;

  private constructor(
    private readonly subscriber: pg.Pool,
    readonly consumer: string,
    readonly owner: string,
    private readonly holdSeconds: number,
    private readonly log: Logger,
  ) {}

  /**
   * Claims the consumer's hold row (tick -1), waiting up to waitMs while
   * another live hold has it. Refreshes it every holdSeconds/3 from then on.
   */
  static async claim(
    subscriber: pg.Pool,
    consumer: string,
    owner: string,
    options: { holdSeconds: number; waitMs: number; log: Logger; signal?: AbortSignal },
  ): Promise<ReplayHold> {
    const deadline = Date.now() + options.waitMs;
    for (;;) {
      options.signal?.throwIfAborted();
      const { rows } = await subscriber.query(
        `insert into londiste.replay_hold as h (consumer_id, tick_id, requested_by, expires_at)
         values ($1, $2, $3, pg_catalog.now() + $4 * interval '1 second')
         on conflict (consumer_id) do update
            set tick_id = excluded.tick_id, requested_by = excluded.requested_by, expires_at = excluded.expires_at
          where h.expires_at <= pg_catalog.now()
         returning 1`,
        [consumer, NO_TICK, owner, options.holdSeconds],
      );
      if (rows.length > 0) break;
      if (Date.now() >= deadline) {
        const { rows: other } = await subscriber.query<{ by: string | null; until: Date }>(
          "select requested_by as by, expires_at as until from londiste.replay_hold where consumer_id = $1",
          [consumer],
        );
        throw new CommandError(
          "conflict",
          `replay of consumer ${consumer} is held by another compare/repair (${other[0]?.by ?? "?"}, until ${other[0]?.until?.toISOString() ?? "?"}); try again later`,
        );
      }
      await sleep(200, options.signal);
    }
    const hold = new ReplayHold(subscriber, consumer, owner, options.holdSeconds, options.log);
    hold.timer = setInterval(() => void hold.refresh(), Math.max(500, (options.holdSeconds * 1000) / 3));
    hold.timer.unref();
    return hold;
  }

  /** Holds replay at this tick (committed at once). */
  async setTick(tick: number): Promise<void> {
    const { rows } = await this.subscriber.query(
      "update londiste.replay_hold set tick_id = $3 where consumer_id = $1 and requested_by = $2 returning 1",
      [this.consumer, this.owner, tick],
    );
    if (rows.length === 0) throw new CommandError("conflict", "the hold on replay was lost (expired and taken by another request)");
    this.tick = tick;
  }

  /** Pushes the expiry forward; false when the row is gone (expired and taken, or deleted). */
  async refresh(): Promise<boolean> {
    if (this.released) return false;
    try {
      const { rows } = await this.subscriber.query(
        `update londiste.replay_hold set expires_at = pg_catalog.now() + $3 * interval '1 second'
          where consumer_id = $1 and requested_by = $2 returning 1`,
        [this.consumer, this.owner, this.holdSeconds],
      );
      if (rows.length === 0) this.log.warn({ consumer: this.consumer }, "the hold on replay is gone");
      return rows.length > 0;
    } catch (error) {
      this.log.warn({ err: error }, "refreshing the hold on replay failed (it expires by itself)");
      return false;
    }
  }

  /** Deletes the hold: replay goes on. Never throws (the expiry is the fallback). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.subscriber.query("delete from londiste.replay_hold where consumer_id = $1 and requested_by = $2", [this.consumer, this.owner]);
        return;
      } catch (error) {
        this.log.warn({ err: error, attempt }, "releasing the hold on replay failed; it expires by itself");
        await sleep(200 * (attempt + 1));
      }
    }
  }
}
