/**
 * `subscriber register` and `subscriber unregister`, and what replay
 * makes of them. The operator's unregister is remembered on the subscriber
 * (londiste.unregistered): replay must not register its consumer again on
 * its own, which would start copying every table at once. The fact is
 * written in the transaction that unregisters and resets the tables, and
 * deleted only by `subscriber register`. Whoever runs those commands (the
 * replay service's admin commands, or a command talking to the databases
 * directly) goes through these functions, so replay honours either. Both
 * run under replay's position lock: no batch is half applied meanwhile,
 * and replay's own registration never interleaves with them.
 */
import type pg from "pg";
import type { Queryable } from "../db/queryable.ts";
import { withTransaction } from "../db/transaction.ts";
import { registerConsumer, unregisterConsumer } from "../pgq/index.ts";
import { lockConsumerPosition, recordedTick, recordTick } from "./position.ts";
import { loadTableSyncs, writeTransition } from "./sync-store.ts";

/** What `subscriber unregister` does to the tables, for its reply. */
export const UNREGISTER_TABLES_EFFECT =
  "every table goes back to (none); nothing is replayed or copied until \"subscriber register\", then every table is copied again";

export async function markUnregistered(client: Queryable, consumer: string): Promise<void> {
  await client.query(
    `insert into londiste.unregistered (consumer_id) values ($1)
     on conflict (consumer_id) do update set unregistered_at = now()`,
    [consumer],
  );
}

/** Clears the fact; true when it was set. */
export async function clearUnregistered(client: Queryable, consumer: string): Promise<boolean> {
  const { rowCount } = await client.query("delete from londiste.unregistered where consumer_id = $1", [consumer]);
  return (rowCount ?? 0) > 0;
}

/**
 * When the operator unregistered the consumer, or null when they did not
 * (or registered it since, or the subscriber's londiste predates the fact).
 */
export async function unregisteredSince(client: Queryable, consumer: string): Promise<Date | null> {
  const { rows: table } = await client.query<{ found: boolean }>("select to_regclass('londiste.unregistered') is not null as found");
  if (!table[0]?.found) return null;
  const { rows } = await client.query<{ at: Date }>("select unregistered_at as at from londiste.unregistered where consumer_id = $1", [consumer]);
  return rows[0]?.at ?? null;
}

/**
 * Registers the consumer on the provider unless the operator unregistered
 * it, under the consumer's position lock, which `subscriber unregister`
 * also holds: the two cannot interleave, so an unregister is never undone
 * by a registration that checked just before it. Returns when the
 * operator unregistered it (nothing registered then), else null.
 */
export async function registerUnlessUnregistered(
  subscriber: pg.Pool,
  provider: pg.Pool,
  queue: string,
  consumer: string,
): Promise<Date | null> {
  return withTransaction(subscriber, async (client) => {
    await lockConsumerPosition(client, consumer);
    const since = await unregisteredSince(client, consumer);
    if (since === null) await registerConsumer(provider, queue, consumer);
    return since;
  });
}

export interface Registered {
  /** A new registration on the provider (false: it was registered already). */
  created: boolean;
  /** It ended an operator's unregister. */
  resumed: boolean;
  /** The tick the subscriber still records (from an earlier registration), or null. */
  recorded: number | null;
}

/** `subscriber register`: ends an operator's unregister and registers the consumer on the provider. */
export async function registerSubscriber(subscriber: pg.Pool, provider: pg.Pool, queue: string, consumer: string): Promise<Registered> {
  return withTransaction(subscriber, async (client) => {
    await lockConsumerPosition(client, consumer);
    const resumed = await clearUnregistered(client, consumer);
    const created = await registerConsumer(provider, queue, consumer);
    return { created, resumed, recorded: await recordedTick(client, consumer) };
  });
}

export interface Unregistered {
  /** Tables put back to (none). */
  tablesReset: number;
  /** The consumer was registered on the provider until now. */
  wasRegistered: boolean;
}

/**
 * `subscriber unregister`: every table back to (none) (their changes from
 * now on are lost to this subscriber, so they must be copied again), the
 * recorded position forgotten, the fact remembered, the consumer
 * unregistered on the provider; one subscriber transaction.
 */
export async function unregisterSubscriber(subscriber: pg.Pool, provider: pg.Pool, queue: string, consumer: string): Promise<Unregistered> {
  return withTransaction(subscriber, async (client) => {
    await lockConsumerPosition(client, consumer);
    let tablesReset = 0;
    for (const t of await loadTableSyncs(client, queue)) {
      if ((await writeTransition(client, t, { type: "RESYNC" }, "admin")).accepted) tablesReset++;
    }
    await recordTick(client, consumer, null);
    await markUnregistered(client, consumer);
    const wasRegistered = await unregisterConsumer(provider, queue, consumer).then(
      () => true,
      (error: unknown) => {
        if ((error as { kind?: string }).kind !== "consumer_not_registered") throw error;
        return false;
      },
    );
    return { tablesReset, wasRegistered };
  });
}
