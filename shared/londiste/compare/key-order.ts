/**
 * Comparing primary keys in JavaScript exactly as Postgres orders them in
 * the merge queries (`order by k1 collate "C", k2, ...`), from their text
 * under the pinned settings. Pure.
 *
 * Fast kinds are compared here: integers (as BigInt), text-like values
 * (bytewise UTF-8, which is what collation "C" does), uuid (its fixed-width
 * hex text sorts like its bytes) and boolean. Any other key type is
 * compared by Postgres itself (KeyKind "pg"): the caller supplies that
 * comparison, needed only where two keys differ, i.e. at a difference.
 */

export type KeyKind = "int" | "bytes" | "uuid" | "bool" | "pg";

const INT_TYPES = new Set([20, 21, 23, 26]); // int8, int2, int4, oid
const BYTE_TYPES = new Set([25, 1043, 19]); // text, varchar, name (bytewise under "C")
const UUID = 2950;
const BOOL = 16;

/** How a key column of this base type compares; text-like types only when they are ordered bytewise. */
export function keyKind(baseTypeOid: number): KeyKind {
  if (INT_TYPES.has(baseTypeOid)) return "int";
  if (BYTE_TYPES.has(baseTypeOid)) return "bytes";
  if (baseTypeOid === UUID) return "uuid";
  if (baseTypeOid === BOOL) return "bool";
  return "pg";
}

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

/** Compares two non-null texts of one key part; undefined when Postgres must decide. */
export function comparePart(kind: KeyKind, a: string, b: string): number | undefined {
  if (a === b) return 0;
  switch (kind) {
    case "int": {
      const x = BigInt(a);
      const y = BigInt(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case "bytes":
      return sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
    case "uuid":
    case "bool":
      return a < b ? -1 : 1;
    case "pg":
      return undefined;
  }
}

export type Key = ReadonlyArray<string | null>;

/** Postgres' own comparison of two whole keys (-1, 0, 1), for key types compared there. */
export type PgKeyCompare = (a: Key, b: Key) => Promise<number>;

export class KeyComparator {
  /** Whether every key part compares here, without Postgres. */
  readonly local: boolean;

  constructor(
    readonly kinds: readonly KeyKind[],
    private readonly pg?: PgKeyCompare,
  ) {
    this.local = kinds.every((k) => k !== "pg");
  }

  /** Compares the first kinds.length fields of two rows; a Promise only when Postgres is asked. */
  compare(a: Key, b: Key): number | Promise<number> {
    for (let i = 0; i < this.kinds.length; i++) {
      const x = a[i];
      const y = b[i];
      if (x === null || x === undefined || y === null || y === undefined) throw new Error("a primary key column is NULL");
      const c = comparePart(this.kinds[i]!, x, y);
      if (c === undefined) {
        if (!this.pg) throw new Error("no Postgres comparison for this key type");
        return this.pg(a.slice(0, this.kinds.length), b.slice(0, this.kinds.length));
      }
      if (c !== 0) return c;
    }
    return 0;
  }
}
