/**
 * "One active instance" through a Postgres session advisory lock: the
 * instance whose connection holds the lock is active; others try again
 * until it is free. The lock lives exactly as long as the holder's
 * connection, so a killed or partitioned holder loses it without any
 * clean-up, and a standby on any host takes over.
 */
import type pg from "pg";
import { clientNaming } from "./where.ts";

export class SessionLock {
  private client: pg.Client | undefined;
  private held = false;

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
      const { rows } = await this.client.query<{ ok: boolean }>("select pg_try_advisory_lock($1, $2) as ok", [
        this.key[0],
        this.key[1],
      ]);
      this.held = rows[0]!.ok;
      return this.held;
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Drops the connection (and with it the lock). */
  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.held = false;
    if (client) await client.end().catch(() => {});
  }
}
