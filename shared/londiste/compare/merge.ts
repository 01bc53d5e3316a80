/**
 * The streaming merge of repair: two row streams ordered by primary key
 * (provider = source, subscriber = destination), walked side by side.
 * Memory stays flat: one row of each side at a time. Rows are text under
 * the pinned settings, keys first; two rows with the same key are equal
 * when every compared column has the same text (NULL apart from '').
 *
 * When keys are compared here (KeyComparator.local) each stream is also
 * checked to be strictly increasing: a disagreement between the database's
 * order and ours would otherwise produce wrong fixes, so it stops the
 * merge instead. Pure (no I/O of its own).
 */
import type { KeyComparator } from "./key-order.ts";
import type { Row } from "./plan.ts";

export type RowDiff =
  | { kind: "insert"; src: Row }
  | { kind: "update"; src: Row; dst: Row }
  | { kind: "delete"; dst: Row };

export interface MergeCounts {
  srcRows: number;
  dstRows: number;
  inserts: number;
  updates: number;
  deletes: number;
}

export function emptyCounts(): MergeCounts {
  return { srcRows: 0, dstRows: 0, inserts: 0, updates: 0, deletes: 0 };
}

export function rowsEqual(a: Row, b: Row): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class OrderError extends Error {
  constructor(side: string, prev: Row, cur: Row, keyCount: number) {
    super(
      `${side} rows are not in key order (${JSON.stringify(prev.slice(0, keyCount))} before ${JSON.stringify(cur.slice(0, keyCount))}): ` +
        "the database orders this key differently from the merge; nothing was changed",
    );
    this.name = "OrderError";
  }
}

async function* checked(rows: AsyncIterable<Row>, cmp: KeyComparator, side: string): AsyncGenerator<Row> {
  let prev: Row | undefined;
  for await (const row of rows) {
    if (prev !== undefined && cmp.local && (cmp.compare(prev, row) as number) >= 0) throw new OrderError(side, prev, row, cmp.kinds.length);
    prev = row;
    yield row;
  }
}

/** The differences, in key order; counts are updated as the merge goes. */
export async function* mergeDiff(
  src: AsyncIterable<Row>,
  dst: AsyncIterable<Row>,
  cmp: KeyComparator,
  counts: MergeCounts = emptyCounts(),
): AsyncGenerator<RowDiff> {
  const s = checked(src, cmp, "provider")[Symbol.asyncIterator]();
  const d = checked(dst, cmp, "subscriber")[Symbol.asyncIterator]();
  try {
    const nextS = async () => {
      const r = await s.next();
      if (r.done) return undefined;
      counts.srcRows++;
      return r.value;
    };
    const nextD = async () => {
      const r = await d.next();
      if (r.done) return undefined;
      counts.dstRows++;
      return r.value;
    };
    let [a, b] = await Promise.all([nextS(), nextD()]);
    while (a !== undefined || b !== undefined) {
      const c = a === undefined ? 1 : b === undefined ? -1 : await cmp.compare(a, b);
      if (c < 0) {
        counts.inserts++;
        yield { kind: "insert", src: a! };
        a = await nextS();
      } else if (c > 0) {
        counts.deletes++;
        yield { kind: "delete", dst: b! };
        b = await nextD();
      } else {
        if (!rowsEqual(a!, b!)) {
          counts.updates++;
          yield { kind: "update", src: a!, dst: b! };
        }
        [a, b] = await Promise.all([nextS(), nextD()]);
      }
    }
  } finally {
    await s.return?.(undefined);
    await d.return?.(undefined);
  }
}
