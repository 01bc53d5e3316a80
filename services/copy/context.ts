/** What every part of a copy worker works with. */
import type pg from "pg";
import type { LondisteConfig } from "../../shared/config/londiste.ts";
import type { Logger } from "../../shared/log.ts";
import type { CopyProgressHooks } from "./progress.ts";
import type { Wakeup } from "./wakeup.ts";

export interface CopyContext {
  provider: pg.Pool;
  subscriber: pg.Pool;
  config: LondisteConfig;
  /** This worker's name in lease_owner: host, pid and a random part. */
  me: string;
  log: Logger;
  /** Fires on tick notices (and copy requests): waiting table workers look again. */
  ticks: Wakeup;
  /** Publishes a JSON message when NATS is connected; drops it otherwise. */
  publish(subject: string, payload: unknown): void;
  /** Told about the rows of each copy as they stream (the worker's metrics), when set. */
  progressHooks?: CopyProgressHooks;
}
