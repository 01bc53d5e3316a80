/**
 * The per-consumer transaction lock on the subscriber: held by replay
 * while it applies a batch and records its tick, and by admin commands
 * that change the position or table states, so neither sees the other
 * half done.
 */
import type { Queryable } from "../../shared/db/queryable.ts";

export async function lockConsumerPosition(client: Queryable, consumer: string): Promise<void> {
  await client.query("select pg_advisory_xact_lock(hashtext('londiste.replay'), hashtext($1))", [consumer]);
}
