/**
 * The copy's snapshot (pg_snapshot text `xmin:xmax:xip,...`) and the
 * visibility rule of PgQ's tick snapshots (docs/pgq.md, "How it works"):
 * a transaction is visible in it when it ended before the snapshot was
 * taken, i.e. txid < xmin, or txid < xmax and not in progress (xip).
 * Events of visible transactions are already in the copied rows. Pure.
 */

export interface TxidSnapshot {
  xmin: number;
  xmax: number;
  xip: Set<number>;
}

export function parseSnapshot(text: string): TxidSnapshot {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!m) throw new Error(`bad snapshot: ${JSON.stringify(text)}`);
  const xmin = Number(m[1]);
  const xmax = Number(m[2]);
  const xip = new Set(m[3] === "" ? [] : m[3]!.split(",").map(Number));
  if (!Number.isSafeInteger(xmin) || !Number.isSafeInteger(xmax) || xmin > xmax) throw new Error(`bad snapshot: ${JSON.stringify(text)}`);
  return { xmin, xmax, xip };
}

export function visibleIn(txid: number, snapshot: TxidSnapshot): boolean {
  if (txid < snapshot.xmin) return true;
  return txid < snapshot.xmax && !snapshot.xip.has(txid);
}
