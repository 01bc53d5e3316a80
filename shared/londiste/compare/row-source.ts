/**
 * Rows of a query as text arrays, streamed through a server-side cursor
 * (flat memory whatever the table's size): every value is the type's text
 * output under the session's settings, NULL as null. The next chunk is
 * fetched while the current one is consumed.
 */
import type pg from "pg";
import Cursor from "pg-cursor";
import { closeCursor } from "../../db/cursor-close.ts";
import type { Query, Row } from "./plan.ts";

const rawText = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

export async function* cursorRows(client: pg.ClientBase, query: Query, chunkRows = 5000, signal?: AbortSignal): AsyncGenerator<Row> {
  const cursor = client.query(new Cursor<Row>(query.text, query.values, { rowMode: "array", types: rawText }));
  let closed = false;
  let pending: Promise<Row[]> = Promise.resolve([]);
  try {
    pending = cursor.read(chunkRows);
    for (;;) {
      const rows = await pending;
      if (rows.length === 0) break;
      signal?.throwIfAborted();
      pending = rows.length < chunkRows ? Promise.resolve([]) : cursor.read(chunkRows);
      // A failed prefetch surfaces when awaited; keep it from being reported as unhandled meanwhile.
      pending.catch(() => {});
      for (const row of rows) yield row;
    }
    closed = true;
    await closeCursor(client, cursor);
  } finally {
    if (!closed) {
      // Stopped early or failed: let a prefetch in flight finish before closing the portal.
      await pending.catch(() => {});
      await closeCursor(client, cursor).catch(() => {});
    }
  }
}

/** All rows of a small query as text arrays. */
export async function textRows(client: pg.ClientBase | pg.Pool, query: Query): Promise<Row[]> {
  const result = await client.query<Row>({ text: query.text, values: query.values, rowMode: "array", types: rawText });
  return result.rows;
}
