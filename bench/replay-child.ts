/**
 * Child process of the benchmark: one replay round — replayOneBatch
 * (services/replay/replay-batch.ts) with applyChanges (shared/londiste/apply.ts)
 * grouped or per-row — of the next batch of a consumer, and a report as a
 * single JSON line on stdout: changes applied, seconds, statements sent and
 * the process's peak RSS. Run in its own process so that the peak RSS
 * belongs to this replay alone (the memory target, P6 in docs/benchmarks.md).
 *
 *   node --import tsx bench/replay-child.ts --provider URL --subscriber URL \
 *        --queue Q --consumer C --group 1|0
 */
import { parseArgs } from "node:util";
import pg from "pg";
import { type ApplyChanges, replayOneBatch } from "../services/replay/replay-batch.ts";
import { applyChanges } from "../shared/londiste/apply.ts";

export interface ReplayReport {
  group: boolean;
  batchId: number;
  changes: number;
  /** Data statements sent by applyChanges. */
  statements: number;
  seconds: number;
  /** Of `seconds`, the time spent inside applyChanges. */
  applySeconds: number;
  rowsPerSecond: number;
  tableErrors: string[];
  /** RSS once connected, before the round (KB). */
  startRssKB: number;
  /** Peak RSS of the process (KB), process.resourceUsage().maxRSS. */
  maxRssKB: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      provider: { type: "string" },
      subscriber: { type: "string" },
      queue: { type: "string" },
      consumer: { type: "string" },
      group: { type: "string" },
    },
  });
  const { provider: providerUrl, subscriber: subscriberUrl, queue, consumer } = values;
  if (!providerUrl || !subscriberUrl || !queue || !consumer || (values.group !== "1" && values.group !== "0")) {
    throw new Error("usage: replay-child.ts --provider URL --subscriber URL --queue Q --consumer C --group 1|0");
  }
  const group = values.group === "1";
  const provider = new pg.Pool({ connectionString: providerUrl, application_name: "londiste-bench-replay", max: 3 });
  const subscriber = new pg.Pool({ connectionString: subscriberUrl, application_name: "londiste-bench-replay", max: 2 });
  try {
    let statements = 0;
    let applyMs = 0;
    const apply: ApplyChanges = async (client, changes, destTable, shapes) => {
      const t0 = performance.now();
      const report = await applyChanges(client, changes, { onMissingRow: "error", group, destTable, shapes });
      applyMs += performance.now() - t0;
      statements += report.statements;
    };
    await (await provider.connect()).release();
    await (await subscriber.connect()).release();
    const startRssKB = Math.round(process.memoryUsage().rss / 1024);
    const start = performance.now();
    // One tick's batch: the bench ticks once per backlog and times each backlog alone.
    const outcome = await replayOneBatch(provider, subscriber, { queue, consumer, ignoreTruncate: false, mergeMaxEvents: 0 }, apply);
    const seconds = (performance.now() - start) / 1000;
    if (outcome.kind !== "applied") throw new Error(`expected a batch to apply, got ${JSON.stringify(outcome)}`);
    const report: ReplayReport = {
      group,
      batchId: outcome.batch.batchId,
      changes: outcome.changes,
      statements,
      seconds,
      applySeconds: applyMs / 1000,
      rowsPerSecond: outcome.changes / seconds,
      tableErrors: outcome.tableErrors,
      startRssKB,
      maxRssKB: process.resourceUsage().maxRSS,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await provider.end();
    await subscriber.end();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
