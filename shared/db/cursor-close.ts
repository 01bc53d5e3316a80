/**
 * Closing a pg-cursor without hanging on a dead connection. Cursor.close()
 * waits for the server's ReadyForQuery, which never comes once the
 * connection is lost (a server restart, a network cut): the read that
 * failed was retried never, because its clean-up waited forever. So the
 * close also ends when the client errors or ends, and is skipped on a
 * client that can no longer send a query (its portal went with it).
 */
import type pg from "pg";
import type Cursor from "pg-cursor";

export function closeCursor(client: pg.ClientBase, cursor: Cursor<unknown>): Promise<void> {
  // pg sets _queryable to false once the connection errored or ended; there is no public flag for it.
  if ((client as unknown as { _queryable?: boolean })._queryable === false) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const gone = () => {
      client.off("end", gone);
      client.off("error", gone);
      resolve();
    };
    client.once("end", gone);
    client.once("error", gone);
    cursor.close().then(gone, (error: unknown) => {
      client.off("end", gone);
      client.off("error", gone);
      reject(error as Error);
    });
  });
}
