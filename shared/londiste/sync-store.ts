/**
 * Where the table-sync machine's state lives: the table's row in
 * londiste.subscriber_table on the subscriber. A transition is written in
 * the caller's transaction (the one that did the work), as a
 * compare-and-set on sync_version: when another actor changed the row
 * since it was read, SyncConflict is thrown and the caller rolls back,
 * re-reads and decides again. Each transition also goes into
 * londiste.sync_outbox in the same transaction, for the JetStream relay.
 *
 * The one reader and writer of a table's sync state in TypeScript: no
 * service reads merge_state or writes the state columns or the outbox
 * itself. (The SQL functions londiste.subscriber_set_table_state/_error
 * are kept for compatibility only: they bypass the machine's guards and
 * the outbox, and no service calls them.) A person's plain-SQL write of
 * merge_state is turned into the machine's move by the trigger
 * londiste.merge_state_write, from the generated londiste.sync_sql_write
 * (sync-machine-sql.ts), the same way: new state, sync_version + 1, an
 * outbox entry. The check subscriber_table_merge_state_matches keeps
 * merge_state equal to the text of sync_state.
 */
import type { Queryable } from "../db/queryable.ts";
import { decide, fromStateText, type PersistedSync, stateText, type SyncActor, type SyncEvent } from "./sync-machine.ts";

export interface TableSync {
  queue: string;
  table: string;
  /** The subscriber table written. */
  dest: string;
  sync: PersistedSync;
  version: number;
  skipTruncate: boolean;
  leaseOwner: string | null;
  leaseUntil: Date | null;
  copyProgress: Record<string, unknown> | null;
  /** merge_state, the Skytools 2 text form of the state (docs/table-sync-machine.md). */
  stateText: string | null;
  snapshot: string | null;
  lastError: string | null;
  errorTime: Date | null;
}

export class SyncConflict extends Error {
  constructor(readonly table: string) {
    super(`the state of ${table} changed meanwhile`);
    this.name = "SyncConflict";
  }
}

interface Row {
  table_name: string;
  dest_table: string | null;
  merge_state: string | null;
  snapshot: string | null;
  last_error: string | null;
  error_time: Date | null;
  sync_state: PersistedSync | null;
  sync_version: string;
  skip_truncate: boolean | null;
  lease_owner: string | null;
  lease_until: Date | null;
  copy_progress: Record<string, unknown> | null;
}

const COLUMNS = `table_name, dest_table, merge_state, snapshot, last_error, error_time, sync_state, sync_version,
                 skip_truncate, lease_owner, lease_until, copy_progress`;

function fromRow(queue: string, r: Row): TableSync {
  // A row whose state was set through the SQL functions has no snapshot: the text is the truth.
  const sync = r.sync_state ?? fromStateText(r.merge_state, r.snapshot, r.last_error);
  return {
    queue,
    table: r.table_name,
    dest: r.dest_table ?? r.table_name,
    sync,
    version: Number(r.sync_version),
    skipTruncate: r.skip_truncate === true,
    leaseOwner: r.lease_owner,
    leaseUntil: r.lease_until,
    copyProgress: r.copy_progress,
    stateText: r.merge_state,
    snapshot: r.snapshot,
    lastError: r.last_error,
    errorTime: r.error_time,
  };
}

export async function loadTableSyncs(db: Queryable, queue: string): Promise<TableSync[]> {
  const { rows } = await db.query<Row>(`select ${COLUMNS} from londiste.subscriber_table where queue_name = $1 order by nr`, [queue]);
  return rows.map((r) => fromRow(queue, r));
}

export async function loadTableSync(db: Queryable, queue: string, table: string): Promise<TableSync | null> {
  const { rows } = await db.query<Row>(
    `select ${COLUMNS} from londiste.subscriber_table where queue_name = $1 and table_name = $2`,
    [queue, table],
  );
  return rows[0] ? fromRow(queue, rows[0]) : null;
}

/** Whether the queue has any table in the subscriber's set. */
export async function hasTableSyncs(db: Queryable, queue: string): Promise<boolean> {
  const { rows } = await db.query("select 1 from londiste.subscriber_table where queue_name = $1 limit 1", [queue]);
  return rows.length > 0;
}

/**
 * The first entry of a table's history, in the transaction that added it
 * to the set (londiste.subscriber_add_table): it has no state to come from.
 */
export async function recordTableAdded(client: Queryable, added: TableSync, actor: SyncActor): Promise<void> {
  await client.query(
    `insert into londiste.sync_outbox (queue_name, table_name, from_state, to_state, event, version)
     values ($1, $2, null, null, $3, $4)`,
    [added.queue, added.table, JSON.stringify({ type: "ADDED", actor }), added.version],
  );
}

export type TransitionResult =
  | { accepted: true; table: TableSync }
  | { accepted: false; reason: string };

/**
 * Decides `event` for the table as it was read (`current`) and, when the
 * machine accepts it, writes the new state if the row still has the
 * version it was read with (SyncConflict otherwise). A rejected event
 * changes nothing.
 */
export async function writeTransition(
  client: Queryable,
  current: TableSync,
  event: SyncEvent,
  actor: SyncActor,
): Promise<TransitionResult> {
  const decision = decide(current.sync, event);
  if (!decision.accepted) return { accepted: false, reason: decision.reason };
  const next = decision.next;
  const version = current.version + 1;
  const text = stateText(next);
  const result =
    next.state === "removed"
      ? await client.query("delete from londiste.subscriber_table where queue_name = $1 and table_name = $2 and sync_version = $3", [
          current.queue,
          current.table,
          current.version,
        ])
      : await client.query(
          `update londiste.subscriber_table
              set sync_state = $4, merge_state = $5, snapshot = $6, sync_version = $7,
                  last_error = $8, error_time = case when $8::text is null then null else now() end,
                  skip_truncate = case when $5 = 'ok' then null else skip_truncate end,
                  lease_owner = case when $5 in ('ok', 'error') or $5 is null then null else lease_owner end,
                  lease_until = case when $5 in ('ok', 'error') or $5 is null then null else lease_until end
            where queue_name = $1 and table_name = $2 and sync_version = $3`,
          [current.queue, current.table, current.version, JSON.stringify(next), text, next.context.snapshot, version, next.context.error],
        );
  if (result.rowCount !== 1) throw new SyncConflict(current.table);
  await client.query(
    // clock_timestamp: the moment of the change, not the start of a long copy transaction.
    `insert into londiste.sync_outbox (queue_name, table_name, from_state, to_state, event, version, created_at)
     values ($1, $2, $3, $4, $5, $6, clock_timestamp())`,
    [current.queue, current.table, stateText(current.sync), next.state === "removed" ? "removed" : text, JSON.stringify({ ...event, actor }), version],
  );
  return {
    accepted: true,
    table: { ...current, sync: next, version, stateText: text, snapshot: next.context.snapshot, lastError: next.context.error },
  };
}
