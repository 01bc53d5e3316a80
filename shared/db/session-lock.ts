/**
 * "One active instance" through a Postgres session advisory lock: the
 * instance whose connection holds the lock is active; others try again
 * until it is free. The lock lives exactly as long as the holder's
 * connection, so a killed or partitioned holder loses it without any
 * clean-up, and a standby on any host takes over.
 */
import type pg from "pg";
import type { Queryable } from "./queryable.ts";
import { clientNaming } from "./where.ts";

/**
 * The instance's lock session is gone (ended by the server, a network cut,
 * a pause longer than the server waited): another instance may be active
 * now, so the work of the transaction that found out must not commit.
 */
export class SessionLockLost extends Error {
  constructor(what: string) {
    super(`${what}: this instance no longer holds the lock (its session ended); its transaction is rolled back and it stands by`);
    this.name = "SessionLockLost";
  }
}

export class SessionLock {
  private client: pg.Client | undefined;
  private held = false;
  /** Server pid of the lock session, read when the lock was taken. */
  private pid: number | undefined;

  constructor(
    private readonly pgConfig: pg.ClientConfig,
    /** The two int4 keys of pg_try_advisory_lock. */
    private readonly key: readonly [number, number],
    /** Which database this is, for connection errors ("subscriber"). */
    private readonly side = "lock",
  ) {}

  /** The connection holding the lock; do the active instance's work on it, so losing it means losing the lock. */
  get connection(): pg.Client {
    if (!this.client || !this.held) throw new Error("session lock not held");
    return this.client;
  }

  get isHeld(): boolean {
    return this.held;
  }

  /** Tries once; true when this instance now holds the lock. Connection errors propagate. */
  async tryAcquire(): Promise<boolean> {
    if (this.held) return true;
    if (!this.client) {
      const client = new (clientNaming(this.side, this.pgConfig))(this.pgConfig);
      client.on("error", () => {
        // The next query reports it; the lock is gone with the connection.
        this.held = false;
      });
      await client.connect();
      this.client = client;
    }
    try {
      const { rows } = await this.client.query<{ ok: boolean; pid: number }>(
        "select pg_try_advisory_lock($1, $2) as ok, pg_backend_pid() as pid",
        [this.key[0], this.key[1]],
      );
      this.held = rows[0]!.ok;
      this.pid = rows[0]!.pid;
      return this.held;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /**
   * The fence of the active instance's writes: run in the transaction about
   * to commit them (on another session), it throws SessionLockLost unless
   * the lock session is still alive on the server and holds the lock. The
   * process's own view (held) is not enough: a process paused or cut off
   * does not learn that the server ended its session, and a standby took
   * the lock meanwhile. Whatever both write (replay's recorded position)
   * must be locked by the caller before this check, so a standby that takes
   * the lock just after it waits for this commit and then sees it.
   */
  async assertHeld(client: Queryable, what: string): Promise<void> {
    if (!this.held || this.pid === undefined) throw new SessionLockLost(what);
    const { rows } = await client.query<{ ok: boolean }>(
      `select exists (select 1 from pg_catalog.pg_locks
                       where locktype = 'advisory' and granted and pid = $3
                         and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
                         and classid = $1::int4::oid and objid = $2::int4::oid and objsubid = 2) as ok`,
      [this.key[0], this.key[1], this.pid],
    );
    if (!rows[0]!.ok) {
      this.held = false;
      throw new SessionLockLost(what);
    }
  }

  /** Drops the connection (and with it the lock). */
  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.held = false;
    this.pid = undefined;
    if (client) await client.end().catch(() => {});
  }
}
