/**
 * A consumer loop: runs a handler for each batch and closes the batch the
 * way PgQ expects (docs/pgq.md, "PgQ from TypeScript"):
 *   next_batch committed on its own -> events streamed -> handler ->
 *   retry/failed tags and finish_batch in one transaction.
 *
 * A handler that returns normally has handled every event it did not tag
 * with retry() or fail(). A handler that throws finishes nothing: the
 * batch stays open and comes back, identical, on the next round (so a
 * handler must tolerate seeing a batch again, e.g. by recording the batch
 * or tick in its own transaction).
 */
import { sleep } from "../sleep.ts";
import type pg from "pg";
import type { Queryable } from "../db/queryable.ts";
import { withTransaction } from "../db/transaction.ts";
import {
  type BatchLimits,
  batchEvents,
  failEvent,
  finishBatch,
  nextBatch,
  registerConsumer,
  retryEvent,
} from "./batch.ts";
import type { BatchInfo, PgqEvent } from "./types.ts";

export interface ConsumerLogger {
  info(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ConsumerOptions {
  pool: pg.Pool;
  queue: string;
  consumer: string;
  handler: (batch: OpenBatch) => Promise<void>;
  /** Wait between polls when there is no batch (ms); wake() cuts it short. Default 1000. */
  loopDelayMs?: number;
  /** Wait after a failed round (ms). Default 5000. */
  errorDelayMs?: number;
  /** Rows per cursor fetch. Default 1000. */
  fetchSize?: number;
  limits?: BatchLimits;
  logger?: ConsumerLogger;
}

/** The batch a handler works on. */
export class OpenBatch {
  readonly retries: Array<{ event: PgqEvent; delaySeconds: number }> = [];
  readonly failures: Array<{ eventId: number; reason: string }> = [];

  constructor(
    readonly info: BatchInfo,
    private readonly pool: pg.Pool,
    private readonly fetchSize: number,
  ) {}

  /** Streams the batch's events in ev_id order; may be iterated more than once. */
  async *events(): AsyncGenerator<PgqEvent> {
    const client = await this.pool.connect();
    let finished = false;
    let broken: Error | undefined;
    try {
      await client.query("begin read only");
      yield* batchEvents(client, this.info.batchId, this.fetchSize);
      await client.query("commit");
      finished = true;
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      // The handler may stop iterating early (break, throw): end the read
      // transaction before the connection goes back to the pool.
      if (!finished && !broken) {
        await client.query("rollback").catch((error: unknown) => {
          broken = error as Error;
        });
      }
      client.release(broken);
    }
  }

  /** Redeliver this event to this consumer after delaySeconds (default 60, as PgQ). */
  retry(event: PgqEvent, delaySeconds = 60): void {
    this.retries.push({ event, delaySeconds });
  }

  /** Move this event to the failed queue with a reason. */
  fail(event: PgqEvent, reason: string): void {
    this.failures.push({ eventId: event.id, reason });
  }
}


export class Consumer {
  private registered = false;
  private wakeController = new AbortController();
  private readonly opts: Required<Omit<ConsumerOptions, "logger" | "limits">> &
    Pick<ConsumerOptions, "logger" | "limits">;

  constructor(options: ConsumerOptions) {
    this.opts = { loopDelayMs: 1000, errorDelayMs: 5000, fetchSize: 1000, ...options };
  }

  /** Ends the current wait at once (e.g. on a tick notice). */
  wake(): void {
    this.wakeController.abort();
  }

  /**
   * One round: opens the next batch, runs the handler and finishes the
   * batch. Returns the batch, or null when there was none. Throws what the
   * handler or the database threw; the batch then stays open.
   */
  async processOne(): Promise<BatchInfo | null> {
    const { pool, queue, consumer } = this.opts;
    if (!this.registered) {
      await registerConsumer(pool, queue, consumer);
      this.registered = true;
    }
    const info = await nextBatch(pool, queue, consumer, this.opts.limits);
    if (!info) return null;
    const batch = new OpenBatch(info, pool, this.opts.fetchSize);
    await this.opts.handler(batch);
    await closeBatch(pool, queue, consumer, batch);
    return info;
  }

  /** Runs rounds until `signal` aborts; stops between batches, never inside one. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let delay = 0;
      try {
        const info = await this.processOne();
        if (!info) delay = this.opts.loopDelayMs;
      } catch (error) {
        this.opts.logger?.error({ err: error, queue: this.opts.queue, consumer: this.opts.consumer }, "batch failed");
        delay = this.opts.errorDelayMs;
      }
      if (delay > 0 && !signal.aborted) {
        // A wake() that came while we were working means a tick may have
        // arrived since next_batch looked: poll again at once.
        if (!this.wakeController.signal.aborted) {
          await sleep(delay, AbortSignal.any([signal, this.wakeController.signal]));
        }
        this.wakeController = new AbortController();
      }
    }
  }
}

/** Writes the handler's retry/failed tags and finishes the batch, all in one transaction. */
async function closeBatch(pool: pg.Pool, queue: string, consumer: string, batch: OpenBatch): Promise<void> {
  await withTransaction(pool, async (tx: Queryable) => {
    for (const { event, delaySeconds } of batch.retries) {
      await retryEvent(tx, queue, consumer, event, delaySeconds);
    }
    for (const { eventId, reason } of batch.failures) {
      await failEvent(tx, batch.info.batchId, eventId, reason);
    }
    await finishBatch(tx, batch.info.batchId);
  });
}
