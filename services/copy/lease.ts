/**
 * A copy worker's claim on a table: lease_owner and lease_until in the
 * table's row of londiste.subscriber_table, extended by a heartbeat every
 * lease/3. Lease writes never touch sync_version: they are not state
 * changes. A worker that dies stops heartbeating and any other worker may
 * claim the table once lease_until has passed.
 *
 * Every commit that depends on the lease first locks the row and checks
 * the owner (requireLease): a worker that claims the table must update
 * the row, so it either came before (and the check fails) or waits until
 * the commit and continues from what was committed.
 */
import type pg from "pg";
import type { Queryable } from "../../shared/db/queryable.ts";
import { quoteLiteral } from "../../shared/db/sql-text.ts";
import { COPY_STATES, type SyncStateName, stateTextForm } from "../../shared/londiste/sync-machine.ts";
import { loadTableSync, type TableSync } from "../../shared/londiste/sync-store.ts";
import type { Logger } from "../../shared/log.ts";
import { StepAbandoned } from "./errors.ts";

/**
 * The SQL condition on merge_state that holds for the given states, built
 * from the machine's text form of each (a state stored as NULL cannot be
 * told from another one that is, so it is refused).
 */
export function mergeStateCondition(states: readonly SyncStateName[]): string {
  const terms = states.map((state) => {
    const form = stateTextForm(state);
    if (!form) throw new Error(`state ${state} has no text in merge_state`);
    return form.withTick ? `merge_state ~ ${quoteLiteral(`^${form.text}:[0-9]+$`)}` : `merge_state = ${quoteLiteral(form.text)}`;
  });
  return terms.length === 0 ? "false" : `(${terms.join(" or ")})`;
}

/** merge_state of the states a copy worker serves. */
export const IN_COPY_STATE = mergeStateCondition(COPY_STATES);

/** Tables in a copy state whose lease is free, expired or ours, oldest first. */
export async function claimableTables(db: Queryable, queue: string, me: string): Promise<string[]> {
  const { rows } = await db.query<{ table_name: string }>(
    `select table_name from londiste.subscriber_table
      where queue_name = $1 and ${IN_COPY_STATE}
        and (lease_owner is null or lease_until < now() or lease_owner = $2)
      order by nr`,
    [queue, me],
  );
  return rows.map((r) => r.table_name);
}

/**
 * Takes the table when it is (still) in a copy state and its lease is
 * free, expired or already ours; true when it is ours now.
 */
export async function claimTable(db: Queryable, queue: string, table: string, me: string, leaseMs: number): Promise<boolean> {
  const r = await db.query(
    `update londiste.subscriber_table
        set lease_owner = $3, lease_until = now() + $4 * interval '1 millisecond'
      where queue_name = $1 and table_name = $2 and ${IN_COPY_STATE}
        and (lease_owner is null or lease_until < now() or lease_owner = $3)`,
    [queue, table, me, leaseMs],
  );
  return r.rowCount === 1;
}

/**
 * Locks the table's row for the rest of the caller's transaction and
 * checks the lease is still ours; returns the row as it is now.
 */
export async function requireLease(client: Queryable, queue: string, table: string, me: string): Promise<TableSync> {
  const { rows } = await client.query<{ lease_owner: string | null }>(
    "select lease_owner from londiste.subscriber_table where queue_name = $1 and table_name = $2 for update",
    [queue, table],
  );
  if (!rows[0]) throw new StepAbandoned(`${table} is no longer in the subscriber's set`);
  if (rows[0].lease_owner !== me) throw new StepAbandoned(`lost the lease on ${table} (now ${rows[0].lease_owner ?? "nobody"})`, true);
  return (await loadTableSync(client, queue, table))!;
}

/** The row locked (requireLease) and in the state a step expects. */
export async function requireLeaseIn(client: Queryable, queue: string, table: string, me: string, state: string): Promise<TableSync> {
  const t = await requireLease(client, queue, table, me);
  if (t.sync.state !== state) throw new StepAbandoned(`${table} is in state ${t.sync.state} now, not ${state}`);
  return t;
}

/** A held lease: heartbeats until stopped; `signal` fires when it is lost. */
export class Lease {
  private readonly lost = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private beating = false;

  constructor(
    private readonly db: pg.Pool,
    private readonly queue: string,
    readonly table: string,
    private readonly me: string,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  get signal(): AbortSignal {
    return this.lost.signal;
  }

  start(): void {
    this.timer = setInterval(() => void this.beat(), Math.max(200, Math.floor(this.leaseMs / 3)));
  }

  private async beat(): Promise<void> {
    if (this.beating || this.lost.signal.aborted) return;
    this.beating = true;
    try {
      const r = await this.db.query(
        `update londiste.subscriber_table set lease_until = now() + $4 * interval '1 millisecond'
          where queue_name = $1 and table_name = $2 and lease_owner = $3`,
        [this.queue, this.table, this.me, this.leaseMs],
      );
      if (r.rowCount !== 1) {
        this.log.debug({ table: this.table }, "lease gone (taken, released by a state change, or the table left the set)");
        this.lost.abort(new StepAbandoned(`lost the lease on ${this.table}`, true));
      }
    } catch (error) {
      // The database is away: the lease may expire; every commit checks it anyway.
      this.log.warn({ table: this.table, err: error }, "lease heartbeat failed; retrying");
    } finally {
      this.beating = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Gives the table up (if still ours). */
  async release(): Promise<void> {
    this.stop();
    await this.db.query(
      `update londiste.subscriber_table set lease_owner = null, lease_until = null
        where queue_name = $1 and table_name = $2 and lease_owner = $3`,
      [this.queue, this.table, this.me],
    );
  }
}
