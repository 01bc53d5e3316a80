/**
 * Removing a replication job from the subscriber once it replicates
 * nothing: its state-change outbox rows and JetStream stream, its recorded
 * position, and its consumer on the provider. The londiste schema stays
 * (other jobs may share the database), and so do the tables' rows. Used by
 * `londiste CONFIG subscriber uninstall`; takes the stream deletion as a
 * function so it runs wherever a NATS connection is at hand.
 */
import type pg from "pg";
import { CommandError } from "../bus/replies.ts";
import { ADVISORY_LOCKS } from "../db/advisory-locks.ts";
import { withTransaction } from "../db/transaction.ts";
import { unregisterConsumer } from "../pgq/index.ts";
import { subscriberSeqs, subscriberTables } from "./catalog.ts";
import { londisteSchemaVersion } from "./install.ts";
import { lockConsumerPosition, recordTick } from "./position.ts";

export interface JobUninstall {
  provider: pg.Pool;
  subscriber: pg.Pool;
  queue: string;
  consumer: string;
  /** Deletes the job's stream: its name, and whether it existed. */
  deleteStateStream: () => Promise<{ stream: string; deleted: boolean }>;
}

export interface JobUninstalled {
  outbox_rows_deleted: number;
  stream: string;
  stream_deleted: boolean;
  consumer_unregistered: boolean;
  kept: string;
}

/** Refused (conflict) while the subscriber's set still has tables or sequences of the queue. */
export async function uninstallJob(o: JobUninstall): Promise<JobUninstalled> {
  const [tables, seqs] = await Promise.all([subscriberTables(o.subscriber, o.queue), subscriberSeqs(o.subscriber, o.queue)]);
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
  const { outboxRows, stream, deleted } = await withTransaction(o.subscriber, async (client) => {
    await lockConsumerPosition(client, o.consumer);
    await client.query("select pg_advisory_xact_lock($1, hashtext($2))", [ADVISORY_LOCKS.outboxRelay.classId, o.queue]);
    const { rowCount } = await client.query("delete from londiste.sync_outbox where queue_name = $1", [o.queue]);
    await recordTick(client, o.consumer, null);
    return { outboxRows: rowCount ?? 0, ...(await o.deleteStateStream()) };
  });
  let unregistered = false;
  if ((await londisteSchemaVersion(o.provider)) > 0) {
    unregistered = await unregisterConsumer(o.provider, o.queue, o.consumer).then(
      () => true,
      (error: unknown) => {
        const kind = (error as { kind?: string }).kind;
        if (kind === "consumer_not_registered" || kind === "queue_not_found") return false;
        throw error;
      },
    );
  }
  return {
    outbox_rows_deleted: outboxRows,
    stream,
    stream_deleted: deleted,
    consumer_unregistered: unregistered,
    kept: "the londiste schema on the subscriber (other jobs may use it) and the tables' rows",
  };
}
