/**
 * Child process of the benchmark: reads one open batch and reports, as a
 * single JSON line on stdout, how many events it read, how long the read
 * took and the process's peak RSS. Run in its own process so that the peak
 * RSS belongs to this read alone.
 *
 *   node --import tsx bench/read-batch.ts --mode iterator|raw|copy \
 *        --batch ID --url postgres://... [--fetch 1000]
 *
 * iterator: shared/pgq batchEvents (pg-cursor, fetch rows at a time)
 * raw:      select * from pgq.get_batch_events(id), every row in memory
 * copy:     COPY (pgq.batch_event_sql(id)) TO STDOUT, rows counted on the fly
 */
import { parseArgs } from "node:util";
import pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import { batchEvents } from "../shared/pgq/batch.ts";

export type ReadMode = "iterator" | "raw" | "copy";

export interface ReadReport {
  mode: ReadMode;
  events: number;
  /** Sum of ev_data lengths (iterator, raw) or bytes received (copy): proves the rows were read. */
  checksum: number;
  seconds: number;
  eventsPerSecond: number;
  /** RSS once connected, before the read (KB). */
  startRssKB: number;
  /** Peak RSS of the process (KB), process.resourceUsage().maxRSS. */
  maxRssKB: number;
}

async function readIterator(client: pg.Client, batchId: number, fetchSize: number): Promise<[number, number]> {
  let events = 0;
  let checksum = 0;
  await client.query("begin read only");
  for await (const ev of batchEvents(client, batchId, fetchSize)) {
    events++;
    checksum += ev.data?.length ?? 0;
  }
  await client.query("commit");
  return [events, checksum];
}

async function readRaw(client: pg.Client, batchId: number): Promise<[number, number]> {
  const { rows } = await client.query<{ ev_data: string | null }>("select * from pgq.get_batch_events($1)", [batchId]);
  let checksum = 0;
  for (const row of rows) checksum += row.ev_data?.length ?? 0;
  return [rows.length, checksum];
}

async function readCopy(client: pg.Client, batchId: number): Promise<[number, number]> {
  const { rows } = await client.query<{ sql: string }>("select pgq.batch_event_sql($1) as sql", [batchId]);
  const stream = client.query(copyTo(`copy (${rows[0]!.sql}) to stdout`));
  let events = 0;
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) events++;
  }
  return [events, bytes];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mode: { type: "string" },
      batch: { type: "string" },
      url: { type: "string" },
      fetch: { type: "string", default: "1000" },
    },
  });
  const mode = values.mode as ReadMode;
  if (!["iterator", "raw", "copy"].includes(mode)) throw new Error(`--mode must be iterator, raw or copy`);
  const batchId = Number(values.batch);
  const fetchSize = Number(values.fetch);
  if (!Number.isSafeInteger(batchId) || !values.url || !Number.isSafeInteger(fetchSize)) {
    throw new Error("usage: read-batch.ts --mode M --batch ID --url URL [--fetch N]");
  }

  const client = new pg.Client({ connectionString: values.url, application_name: `pgq-bench-read-${mode}` });
  await client.connect();
  try {
    const startRssKB = Math.round(process.memoryUsage().rss / 1024);
    const start = performance.now();
    const [events, checksum] =
      mode === "iterator"
        ? await readIterator(client, batchId, fetchSize)
        : mode === "raw"
          ? await readRaw(client, batchId)
          : await readCopy(client, batchId);
    const seconds = (performance.now() - start) / 1000;
    const report: ReadReport = {
      mode,
      events,
      checksum,
      seconds,
      eventsPerSecond: events / seconds,
      startRssKB,
      maxRssKB: process.resourceUsage().maxRSS,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
