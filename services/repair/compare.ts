/**
 * `compare`: per table, row count and an order-independent checksum of
 * the compared columns on both sides at one consistent point, computed
 * inside Postgres (one scan per side, both sides at once; nothing but two
 * numbers shipped). With `ranged`, a differing table is narrowed down to
 * the key ranges that differ (shared/londiste/compare/ranges.ts). A table
 * replay stopped applying (state error) is compared too, and never passes.
 */
import type pg from "pg";
import type { CommandSpec } from "../../shared/bus/command-service.ts";
import { canSample, checksumQuery, type KeyRange, quantileQuery, showKey, type Side, type TablePlan, WHOLE_TABLE } from "../../shared/londiste/compare/plan.ts";
import { narrowDifferences, pairEqual, type RangePair } from "../../shared/londiste/compare/ranges.ts";
import { textRows } from "../../shared/londiste/compare/row-source.ts";
import { COMMON_FIELDS, commonOptions, forEachTable, newOwner, type TableOutcome } from "./common.ts";
import type { RepairContext } from "./context.ts";
import type { ConsistentPoint } from "./point.ts";
import { STOPPED_NOTE, stoppedTable } from "./tables.ts";

async function sums(client: pg.ClientBase, plan: TablePlan, side: "provider" | "subscriber", range: KeyRange) {
  const q = checksumQuery(plan, side, range);
  const { rows } = await client.query<{ rows: string; sum: string }>(q.text, q.values);
  return { rows: Number(rows[0]!.rows), sum: rows[0]!.sum };
}

export async function checksumPair(point: ConsistentPoint, plan: TablePlan, range: KeyRange = WHOLE_TABLE): Promise<RangePair> {
  const [provider, subscriber] = await Promise.all([sums(point.provider, plan, "provider", range), sums(point.subscriber, plan, "subscriber", range)]);
  return { provider, subscriber };
}

/** Ranges bigger than this are cut at the quantiles of a sample (about SAMPLE_PER_PART rows per part). */
const SAMPLE_ABOVE_ROWS = 100_000;
const SAMPLE_PER_PART = 64;

/**
 * Cuts for a range: for a big range, the quantiles of a TABLESAMPLE SYSTEM sample (reads a
 * small fraction of the table instead of the whole range in key order); when the sample
 * holds too few rows of the range, or for small ranges, the exact quantiles.
 */
async function quantiles(point: ConsistentPoint, plan: TablePlan, range: KeyRange, side: Side, rows: number, parts: number): Promise<string[][]> {
  const client = point[side];
  if (rows > SAMPLE_ABOVE_ROWS && canSample(plan, side)) {
    // Page sampling: the fraction of the whole table that holds about parts * SAMPLE_PER_PART rows of the range.
    const percent = (100 * parts * SAMPLE_PER_PART) / rows;
    const cuts = (await textRows(client, quantileQuery(plan, side, range, SAMPLE_PER_PART, percent))) as string[][];
    if (cuts.length >= parts / 2) return cuts;
  }
  return (await textRows(client, quantileQuery(plan, side, range, Math.ceil(rows / parts)))) as string[][];
}

export interface RangedOptions {
  leafRows: number;
  fanout: number;
  maxRanges: number;
}

async function compareTable(ctx: RepairContext, point: ConsistentPoint, plan: TablePlan, ranged: RangedOptions | null): Promise<TableOutcome> {
  const started = Date.now();
  ctx.progress({ table: plan.table, phase: "checksum", tick: point.tick });
  const whole = await checksumPair(point, plan);
  const equal = pairEqual(whole);
  const { provider: p, subscriber: s } = whole;
  const outcome: TableOutcome = {
    name: plan.table,
    ok: equal,
    status: equal ? "equal" : "differ",
    message: equal
      ? `equal: ${p.rows} rows`
      : `Results do not match! provider ${p.rows} rows, subscriber ${s.rows} rows${p.rows === s.rows ? " (contents differ)" : ""}`,
    tick: point.tick,
    method: point.method,
    provider: { rows: p.rows, checksum: p.sum },
    subscriber: { rows: s.rows, checksum: s.sum },
  };
  if (plan.dest !== plan.table) outcome.dest = plan.dest;
  if (!equal && ranged) {
    const found = await narrowDifferences(
      WHOLE_TABLE,
      whole,
      {
        checksum: (range) => checksumPair(point, plan, range),
        quantiles: (range, side, rows, parts) => quantiles(point, plan, range, side, rows, parts),
      },
      {
        ...ranged,
        signal: ctx.signal,
        onLevel: (depth, ranges) => ctx.progress({ table: plan.table, phase: "ranges", depth, ranges }),
      },
    );
    outcome.ranges = found.ranges.map((r) => ({
      after: r.after,
      up_to: r.upTo,
      provider_rows: r.provider.rows,
      subscriber_rows: r.subscriber.rows,
    }));
    if (found.more > 0) outcome.ranges_more = found.more;
    outcome.message +=
      `; ${found.ranges.length + found.more} differing key range(s)` +
      found.ranges
        .slice(0, 20)
        .map((r) => `\n  keys ${r.after ? `> ${showKey(r.after)}` : "from the start"} ${r.upTo ? `to ${showKey(r.upTo)}` : "to the end"}: provider ${r.provider.rows} rows, subscriber ${r.subscriber.rows} rows`)
        .join("") +
      (found.ranges.length > 20 ? `\n  ... (${found.ranges.length - 20} more in --json)` : "");
  }
  outcome.seconds = (Date.now() - started) / 1000;
  ctx.progress({ table: plan.table, phase: "done", status: outcome.status });
  return outcome;
}

export function compareCommand(ctx: RepairContext): CommandSpec {
  return {
    description: "row counts and checksums of the tables on both sides at one consistent point; ranged: the differing key ranges",
    request: {
      ...COMMON_FIELDS,
      ranged: { type: "boolean", description: "narrow differing tables down to key ranges" },
      leaf_rows: { type: "integer", min: 1, max: 10_000_000, description: "ranged: stop splitting at this many rows (default 1000)" },
      fanout: { type: "integer", min: 2, max: 256, description: "ranged: sub-ranges per split (default 16)" },
      max_ranges: { type: "integer", min: 1, max: 100_000, description: "ranged: most ranges reported (default 1000)" },
    },
    handler: async (request) => {
      const options = commonOptions(request);
      const ranged: RangedOptions | null =
        request.ranged === true
          ? {
              leafRows: (request.leaf_rows as number | undefined) ?? 1000,
              fanout: (request.fanout as number | undefined) ?? 16,
              maxRanges: (request.max_ranges as number | undefined) ?? 1000,
            }
          : null;
      const owner = newOwner(ctx);
      return forEachTable(ctx, options, owner, async (point, plan, target) => {
        const outcome = await compareTable(ctx, point, plan, ranged);
        if (stoppedTable(target.state)) {
          // Equal or not, the table does not replicate: not a success.
          outcome.ok = false;
          outcome.state = target.state;
          outcome.message += `; ${STOPPED_NOTE}`;
        }
        return outcome;
      });
    },
  };
}
