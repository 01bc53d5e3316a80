/**
 * The set-up steps of a londiste job that touch only its two databases:
 * `provider install`, `subscriber install`, `subscriber register` and
 * `subscriber unregister`. The replay service runs them for its admin
 * commands; the londiste command line runs them itself when no service of
 * the job answers, because the Skytools order sets the databases up before
 * any service runs (install, register, then start replay).
 */
import type pg from "pg";
import { CommandError } from "../bus/replies.ts";
import { createQueue, installPgq } from "../pgq/index.ts";
import { installLondiste, londisteSchemaVersion } from "./install.ts";
import {
  registerSubscriber as registerInPlace,
  UNREGISTER_TABLES_EFFECT,
  unregisterSubscriber as unregisterInPlace,
} from "./subscriber-registration.ts";

export interface JobDatabases {
  provider: pg.Pool;
  subscriber: pg.Pool;
  queue: string;
  consumer: string;
}

export async function requireLondisteOn(db: pg.Pool, side: "provider" | "subscriber"): Promise<void> {
  if ((await londisteSchemaVersion(db)) === 0) {
    throw new CommandError("conflict", `londiste is not installed on the ${side}: run "londiste CONFIG ${side} install" first`);
  }
}

export async function requireQueueOn(provider: pg.Pool, queue: string): Promise<void> {
  await requireLondisteOn(provider, "provider");
  const { rows } = await provider.query("select 1 from pgq.queue where queue_name = $1", [queue]);
  if (rows.length === 0) {
    throw new CommandError("conflict", `queue ${queue} does not exist on the provider: run "londiste CONFIG provider install" first`);
  }
}

/** PgQ and londiste on the provider, and the job's queue. */
export async function installProvider(job: Pick<JobDatabases, "provider" | "queue">) {
  await installPgq(job.provider);
  await installLondiste(job.provider);
  const created = await createQueue(job.provider, job.queue);
  return { queue: job.queue, queue_created: created };
}

export async function installSubscriber(job: Pick<JobDatabases, "subscriber">) {
  await installLondiste(job.subscriber);
  return { installed: true };
}

/**
 * Registers replay's consumer on the provider queue (Skytools' `subscriber register`); ends an
 * operator's earlier `subscriber unregister` (subscriber-registration.ts).
 */
export async function registerSubscriber(job: JobDatabases) {
  await requireLondisteOn(job.subscriber, "subscriber");
  await requireQueueOn(job.provider, job.queue);
  const { created, recorded, resumed } = await registerInPlace(job.subscriber, job.provider, job.queue, job.consumer);
  return {
    consumer: job.consumer,
    registered: created,
    resumed: resumed ? "replay goes on: tables in (none) are copied" : undefined,
    warning:
      created && recorded !== null
        ? `the subscriber still records tick ${recorded} from an earlier registration: replay will stop with "Lost position" ` +
          `until the tables are resynced and replay is started once with --reset`
        : undefined,
  };
}

/** Unregisters replay's consumer until `subscriber register`; every table goes back to (none), to be copied again. */
export async function unregisterSubscriber(job: JobDatabases) {
  await requireLondisteOn(job.subscriber, "subscriber");
  await requireQueueOn(job.provider, job.queue);
  const { tablesReset, wasRegistered } = await unregisterInPlace(job.subscriber, job.provider, job.queue, job.consumer);
  return {
    consumer: job.consumer,
    unregistered: true,
    was_registered: wasRegistered,
    tables_reset: tablesReset,
    tables: UNREGISTER_TABLES_EFFECT,
  };
}
