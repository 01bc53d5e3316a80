/** Shapes of what the PgQ SQL API returns, as the TypeScript side sees them. */

export interface PgqEvent {
  id: number;
  time: Date;
  txid: number;
  /** NULL on first delivery, then the number of retries. */
  retry: number | null;
  type: string | null;
  data: string | null;
  extra1: string | null;
  extra2: string | null;
  extra3: string | null;
  extra4: string | null;
}

export interface BatchInfo {
  batchId: number;
  /** Start tick: the consumer's position before this batch. */
  prevTickId: number;
  /** End tick: the consumer's position once the batch is finished. */
  tickId: number;
  prevTickTime: Date;
  tickTime: Date;
}

export interface QueueInfo {
  queueName: string;
  ntables: number;
  curTable: number;
  rotationPeriodSeconds: number;
  switchTime: Date;
  externalTicker: boolean;
  tickerPaused: boolean;
  tickerMaxCount: number;
  tickerMaxLagSeconds: number;
  tickerIdlePeriodSeconds: number;
  /** Seconds since the last tick. */
  tickerLagSeconds: number | null;
  eventsPerSecond: number | null;
  newEvents: number | null;
  lastTickId: number | null;
}

export interface ConsumerInfo {
  queueName: string;
  consumerName: string;
  /** Seconds between now and the consumer's position (its last tick). */
  lagSeconds: number | null;
  /** Seconds since the consumer last opened or finished a batch. */
  lastSeenSeconds: number;
  lastTick: number;
  currentBatch: number | null;
  nextTick: number | null;
  pendingEvents: number | null;
}
