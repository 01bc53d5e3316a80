/**
 * Ranged compare: locating the differences of a big table without
 * shipping it. A key range whose row count or checksum differs between
 * the sides is split into about `fanout` sub-ranges at key quantiles
 * (taken on the side with more rows in the range), each sub-range is
 * checksummed on both sides, and the differing ones are narrowed again,
 * until a range holds at most `leafRows` rows on either side. Equal
 * ranges are never looked into. Pure: the queries are the caller's.
 */
import type { KeyRange } from "./plan.ts";

export interface RangeSums {
  rows: number;
  sum: string;
}

export interface RangePair {
  provider: RangeSums;
  subscriber: RangeSums;
}

export interface DiffRange extends KeyRange {
  provider: RangeSums;
  subscriber: RangeSums;
}

export interface RangeOps {
  /** Checksums of one range on both sides. */
  checksum(range: KeyRange): Promise<RangePair>;
  /**
   * Keys cutting a range of `rows` rows (on the given side) into about `parts` parts, ascending.
   * Any keys inside the range make a correct split; balanced ones make it quick.
   */
  quantiles(range: KeyRange, side: "provider" | "subscriber", rows: number, parts: number): Promise<string[][]>;
}

export interface NarrowOptions {
  fanout?: number;
  leafRows?: number;
  /** Stop after reporting this many ranges (the rest are counted). */
  maxRanges?: number;
  maxDepth?: number;
  signal?: AbortSignal;
  onLevel?: (depth: number, ranges: number) => void;
}

export interface NarrowResult {
  ranges: DiffRange[];
  /** Differing ranges not reported because maxRanges was reached. */
  more: number;
  /** Checksum queries run (per side). */
  checksums: number;
}

export const pairEqual = (p: RangePair) => p.provider.rows === p.subscriber.rows && p.provider.sum === p.subscriber.sum;

/** Sub-ranges of (after, upTo] cut at the given keys. */
export function splitRange(range: KeyRange, cuts: string[][]): KeyRange[] {
  const parts: KeyRange[] = [];
  let after = range.after;
  for (const cut of cuts) {
    parts.push({ after, upTo: cut });
    after = cut;
  }
  parts.push({ after, upTo: range.upTo });
  return parts;
}

export async function narrowDifferences(root: KeyRange, rootSums: RangePair, ops: RangeOps, options: NarrowOptions = {}): Promise<NarrowResult> {
  const fanout = Math.max(2, options.fanout ?? 16);
  const leafRows = Math.max(1, options.leafRows ?? 1000);
  const maxRanges = options.maxRanges ?? 1000;
  const maxDepth = options.maxDepth ?? 12;
  const result: NarrowResult = { ranges: [], more: 0, checksums: 0 };
  if (pairEqual(rootSums)) return result;

  // Depth first, left to right: ranges come out in key order.
  const visit = async (r: DiffRange, depth: number): Promise<void> => {
    options.signal?.throwIfAborted();
    if (result.ranges.length >= maxRanges) {
      result.more++;
      return;
    }
    const big = Math.max(r.provider.rows, r.subscriber.rows);
    if (big <= leafRows || depth >= maxDepth) {
      result.ranges.push(r);
      return;
    }
    const side = r.provider.rows >= r.subscriber.rows ? "provider" : "subscriber";
    const parts = splitRange(r, await ops.quantiles(r, side, big, fanout));
    if (parts.length < 2) {
      result.ranges.push(r);
      return;
    }
    options.onLevel?.(depth + 1, parts.length);
    for (const part of parts) {
      const sums = await ops.checksum(part);
      result.checksums++;
      if (!pairEqual(sums)) await visit({ ...part, ...sums }, depth + 1);
    }
  };
  await visit({ ...root, ...rootSums }, 0);
  return result;
}
