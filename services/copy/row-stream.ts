/**
 * Streams the rows of one table from the provider into the subscriber:
 * `COPY (select ...) TO STDOUT` on the provider connection piped into
 * `COPY ... FROM STDIN` on the subscriber connection, in text format.
 * Node's pipeline carries the backpressure, so at most a few chunks are in
 * memory whatever the table's size. Rows are counted as they pass (in text
 * format every row ends with a newline byte; newlines inside values are
 * escaped).
 */
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";

export interface RowStreamSql {
  /** `COPY (select ...) TO STDOUT` for the provider. */
  copyOut: string;
  /** `COPY table (cols) FROM STDIN` for the subscriber. */
  copyIn: string;
}

export async function streamRows(
  provider: pg.ClientBase,
  subscriber: pg.ClientBase,
  sql: RowStreamSql,
  onChunk: (bytes: number, rows: number) => void,
  signal?: AbortSignal,
  /** Maps the error of the side whose COPY failed first (COPY streams bypass the client's own error mapping). */
  onError?: (error: unknown, side: "provider" | "subscriber") => unknown,
): Promise<{ rows: number; bytes: number }> {
  let rows = 0;
  let bytes = 0;
  const source = provider.query(copyTo(sql.copyOut));
  const sink = subscriber.query(copyFrom(sql.copyIn));
  // Counted as the chunks pass by, without a stream stage of its own (one buffer and hand-off less per chunk).
  source.on("data", (chunk: Buffer) => {
    let n = 0;
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) n++;
    rows += n;
    bytes += chunk.length;
    onChunk(chunk.length, n);
  });
  // Which side failed first, so that its error can name that side's missing grant.
  let failed: "provider" | "subscriber" | undefined;
  source.once("error", () => (failed ??= "provider"));
  sink.once("error", () => (failed ??= "subscriber"));
  try {
    await pipeline(source, sink, signal ? { signal } : {});
  } catch (error) {
    throw onError && failed ? onError(error, failed) : error;
  }
  return { rows, bytes };
}
