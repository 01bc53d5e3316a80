// Transactions on a pooled client, with the rollback and release every caller would otherwise repeat.
import type pg from "pg";

/**
 * Runs `work` inside one transaction on a client checked out of the pool:
 * COMMIT when it resolves, ROLLBACK when it throws (and the error is
 * rethrown). A client whose connection broke is not returned to the pool.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  begin = "begin",
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query("commit");
    return result;
  } catch (error) {
    try {
      await client.query("rollback");
    } catch (rollbackError) {
      broken = rollbackError as Error;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}
