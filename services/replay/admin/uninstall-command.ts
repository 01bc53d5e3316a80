/**
 * `londiste CONFIG subscriber uninstall` as a replay admin command: the
 * job leaves the subscriber and NATS (shared/londiste/job-uninstall.ts).
 */
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { uninstallJob } from "../../../shared/londiste/job-uninstall.ts";
import { type AdminContext, requireLondiste } from "./context.ts";

export function uninstallCommand(ctx: AdminContext): CommandSpec {
  return {
    description: "remove the job from the subscriber: its state-change outbox, its JetStream stream, its position and its consumer",
    request: {},
    handler: async () => {
      await requireLondiste(ctx.subscriber, "subscriber");
      const done = await uninstallJob({
        provider: ctx.provider,
        subscriber: ctx.subscriber,
        queue: ctx.queue,
        consumer: ctx.consumer,
        deleteStateStream: ctx.deleteStateStream,
      });
      return { job: ctx.jobName, ...done };
    },
  };
}
