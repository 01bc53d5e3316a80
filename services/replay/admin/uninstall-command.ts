/**
 * `londiste CONFIG subscriber uninstall`: removes what a job leaves behind
 * once it replicates nothing: its state-change outbox rows and JetStream
 * stream, its recorded position on the subscriber and its consumer on the
 * provider. The londiste schema stays (other jobs may share the database).
 */
import type { CommandSpec } from "../../../shared/bus/command-service.ts";
import { CommandError } from "../../../shared/bus/replies.ts";
import { ADVISORY_LOCKS } from "../../../shared/db/advisory-locks.ts";
import { withTransaction } from "../../../shared/db/transaction.ts";
import { subscriberSeqs, subscriberTables } from "../../../shared/londiste/catalog.ts";
import { londisteSchemaVersion } from "../../../shared/londiste/install.ts";
import { lockConsumerPosition, recordTick } from "../../../shared/londiste/position.ts";
import { unregisterConsumer } from "../../../shared/pgq/index.ts";
import { type AdminContext, requireLondiste } from "./context.ts";

export function uninstallCommand(ctx: AdminContext): CommandSpec {
  const sub = ctx.subscriber;
  return {
    description: "remove the job from the subscriber: its state-change outbox, its JetStream stream, its position and its consumer",
    request: {},
    handler: async () => {
      await requireLondiste(sub, "subscriber");
      const [tables, seqs] = await Promise.all([subscriberTables(sub, ctx.queue), subscriberSeqs(sub, ctx.queue)]);
      if (tables.length > 0 || seqs.length > 0) {
        const names = [...tables.map((t) => t.table), ...seqs];
        throw new CommandError(
          "conflict",
          `the job still replicates ${tables.length} table(s) and ${seqs.length} sequence(s): ` +
            `remove them first ("londiste CONFIG subscriber remove" / "subscriber remove-seq" ${names.join(" ")})`,
        );
      }
      // Under replay's lock (no batch half applied while the position goes away) and the relay's
      // (no relay pass publishing, which would create the stream again, while it goes away).
      const { outboxRows, stream, deleted } = await withTransaction(sub, async (client) => {
        await lockConsumerPosition(client, ctx.consumer);
        await client.query("select pg_advisory_xact_lock($1, hashtext($2))", [ADVISORY_LOCKS.outboxRelay.classId, ctx.queue]);
        const { rowCount } = await client.query("delete from londiste.sync_outbox where queue_name = $1", [ctx.queue]);
        await recordTick(client, ctx.consumer, null);
        return { outboxRows: rowCount ?? 0, ...(await ctx.deleteStateStream()) };
      });
      let unregistered = false;
      if ((await londisteSchemaVersion(ctx.provider)) > 0) {
        unregistered = await unregisterConsumer(ctx.provider, ctx.queue, ctx.consumer).then(
          () => true,
          (error: unknown) => {
            const kind = (error as { kind?: string }).kind;
            if (kind === "consumer_not_registered" || kind === "queue_not_found") return false;
            throw error;
          },
        );
      }
      return {
        job: ctx.jobName,
        outbox_rows_deleted: outboxRows,
        stream,
        stream_deleted: deleted,
        consumer_unregistered: unregistered,
        kept: "the londiste schema on the subscriber (other jobs may use it) and the tables' rows",
      };
    },
  };
}
