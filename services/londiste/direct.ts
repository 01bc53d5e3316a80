/**
 * The londiste commands that only set up the job's databases (provider
 * install, subscriber install, register, unregister), run by the command
 * line itself when no service of the job answers: in the Skytools order
 * they come before replay is started. The steps are the ones replay runs
 * for the same commands (shared/londiste/setup.ts).
 */
import pg from "pg";
import type { LondisteConfig } from "../../shared/config/londiste.ts";
import { handlePoolErrors } from "../../shared/db/pool-errors.ts";
import { installProvider, installSubscriber, type JobDatabases, registerSubscriber, unregisterSubscriber } from "../../shared/londiste/setup.ts";

type Step = (job: JobDatabases) => Promise<Record<string, unknown>>;

const DIRECT_STEPS: Record<string, Step> = {
  "provider.install": installProvider,
  "subscriber.install": installSubscriber,
  "subscriber.register": registerSubscriber,
  "subscriber.unregister": unregisterSubscriber,
};

/** Whether the command can run without a service, directly on the databases. */
export function runsDirectly(command: string): boolean {
  return Object.hasOwn(DIRECT_STEPS, command);
}

/** Runs the command on the job's databases; the reply a service would have sent. */
export async function runDirectly(command: string, config: LondisteConfig): Promise<Record<string, unknown>> {
  const step = DIRECT_STEPS[command];
  if (!step) throw new Error(`${command} needs a service`);
  // A lost connection fails the statement using it, which the command reports.
  const provider = handlePoolErrors(new pg.Pool({ ...config.provider, max: 1, application_name: `londiste cli ${config.jobName}` }), () => {});
  const subscriber = handlePoolErrors(new pg.Pool({ ...config.subscriber, max: 1, application_name: `londiste cli ${config.jobName}` }), () => {});
  try {
    return await step({ provider, subscriber, queue: config.queue, consumer: config.consumer });
  } finally {
    await Promise.all([provider.end(), subscriber.end()]);
  }
}
