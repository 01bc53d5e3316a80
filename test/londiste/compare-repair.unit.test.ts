/**
 * The pure parts of compare/repair (shared/londiste/compare), without a
 * database: the streaming merge against a naive diff on random tables,
 * key comparison, range narrowing on an in-memory table, table plans and
 * their refusals, and the fix statements' quoting.
 */
import { describe, expect, it } from "vitest";
import type { DescribedColumn, DescribedTable } from "../../shared/londiste/compare/describe.ts";
import { comparePart, KeyComparator, keyKind } from "../../shared/londiste/compare/key-order.ts";
import { emptyCounts, mergeDiff, OrderError, type RowDiff } from "../../shared/londiste/compare/merge.ts";
import {
  checksumQuery,
  deleteStatement,
  fixStatement,
  insertStatement,
  keyFetchQuery,
  type KeyRange,
  mergeQuery,
  planTable,
  type Row,
  type TablePlan,
  updateStatement,
} from "../../shared/londiste/compare/plan.ts";
import { narrowDifferences, splitRange } from "../../shared/londiste/compare/ranges.ts";

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function* iter(rows: Row[]): AsyncGenerator<Row> {
  yield* rows;
}

async function collect(gen: AsyncGenerator<RowDiff>): Promise<RowDiff[]> {
  const out: RowDiff[] = [];
  for await (const d of gen) out.push(d);
  return out;
}

const col = (name: string, type: string, extra: Partial<DescribedColumn> = {}): DescribedColumn => ({
  name,
  type,
  castType: type,
  baseTypeOid: type === "integer" ? 23 : type === "text" ? 25 : type === "bigint" ? 20 : 1184,
  collatable: type === "text",
  byteOrdered: false,
  generated: false,
  identityAlways: false,
  ...extra,
});

const table = (name: string, columns: DescribedColumn[], primaryKey: string[], relkind = "r"): DescribedTable => ({ name, relkind, columns, primaryKey });

describe("merge", () => {
  it("finds exactly the differences of random tables (int keys), in key order, with counts", async () => {
    const random = rng(42);
    for (let round = 0; round < 30; round++) {
      const src = new Map<number, string | null>();
      const dst = new Map<number, string | null>();
      for (let i = 0; i < 300; i++) {
        const k = Math.floor(random() * 2000) - 1000;
        const v = random() < 0.1 ? null : random() < 0.1 ? "" : `v${Math.floor(random() * 5)}`;
        const r = random();
        if (r < 0.8) {
          src.set(k, v);
          dst.set(k, random() < 0.9 ? v : v === null ? "" : null);
        } else if (r < 0.9) src.set(k, v);
        else dst.set(k, v);
      }
      const rows = (m: Map<number, string | null>): Row[] =>
        [...m.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v]);
      const counts = emptyCounts();
      const diffs = await collect(mergeDiff(iter(rows(src)), iter(rows(dst)), new KeyComparator(["int"]), counts));
      const expected: string[] = [];
      for (const k of [...new Set([...src.keys(), ...dst.keys()])].sort((a, b) => a - b)) {
        if (!dst.has(k)) expected.push(`insert ${k}`);
        else if (!src.has(k)) expected.push(`delete ${k}`);
        else if (src.get(k) !== dst.get(k)) expected.push(`update ${k}`);
      }
      expect(diffs.map((d) => `${d.kind} ${(d.kind === "insert" ? d.src : d.dst)[0]}`)).toEqual(expected);
      expect(counts.srcRows).toBe(src.size);
      expect(counts.dstRows).toBe(dst.size);
      expect(counts.inserts + counts.updates + counts.deletes).toBe(expected.length);
    }
  });

  it("stops when a side is not in the order it compares keys in", async () => {
    const rows: Row[] = [["1", "a"], ["10", "b"], ["9", "c"]];
    await expect(collect(mergeDiff(iter(rows), iter([]), new KeyComparator(["int"])))).rejects.toBeInstanceOf(OrderError);
    // The same texts are in order as bytes: "1" < "10" < "9".
    expect(await collect(mergeDiff(iter(rows), iter(rows), new KeyComparator(["bytes"])))).toEqual([]);
  });

  it("asks Postgres only for key types it cannot compare itself, and only where keys differ", async () => {
    const asked: Array<[string, string]> = [];
    const cmp = new KeyComparator(["int", "pg"], async (a, b) => {
      asked.push([a[1]!, b[1]!]);
      return a[1]! < b[1]! ? -1 : a[1]! > b[1]! ? 1 : 0;
    });
    const src: Row[] = [["1", "a", "x"], ["1", "b", "x"], ["2", "a", "x"]];
    const dst: Row[] = [["1", "a", "x"], ["1", "c", "x"], ["2", "a", "y"]];
    const diffs = await collect(mergeDiff(iter(src), iter(dst), cmp));
    expect(diffs.map((d) => d.kind)).toEqual(["insert", "delete", "update"]);
    // ("1","c") against ("2","a") is decided by the integer part; equal texts need no comparison.
    expect(asked).toEqual([["b", "c"]]);
  });
});

describe("key order", () => {
  it("text keys compare bytewise (collation C), integers as numbers, uuids and booleans as text", () => {
    const words = ["", " ", "Zeta", "zeta", "a", "ä", "é", "e", "Ω", "日本", "🐘", "\u0001", "a\u0000".slice(0, 1), "ab", "a b"];
    const sorted = [...words].sort((a, b) => comparePart("bytes", a, b)!);
    expect(sorted).toEqual([...words].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(comparePart("bytes", "Zeta", "zeta")).toBe(-1);
    expect(comparePart("bytes", "z", "ä")).toBe(-1);
    expect(comparePart("int", "-9223372036854775808", "9223372036854775807")).toBe(-1);
    expect(comparePart("int", "10", "9")).toBe(1);
    expect(comparePart("bool", "f", "t")).toBe(-1);
    expect(comparePart("pg", "1.0", "1.00")).toBeUndefined();
    expect(comparePart("pg", "x", "x")).toBe(0);
    expect([keyKind(20), keyKind(21), keyKind(23), keyKind(25), keyKind(1043), keyKind(2950), keyKind(16), keyKind(1700), keyKind(1042)]).toEqual([
      "int",
      "int",
      "int",
      "bytes",
      "bytes",
      "uuid",
      "bool",
      "pg",
      "pg",
    ]);
  });
});

describe("ranges", () => {
  it("splitRange cuts (after, upTo] at the given keys", () => {
    expect(splitRange({ after: null, upTo: null }, [["5"], ["9"]])).toEqual([
      { after: null, upTo: ["5"] },
      { after: ["5"], upTo: ["9"] },
      { after: ["9"], upTo: null },
    ]);
  });

  it("narrows an in-memory table to small ranges holding every difference, without looking into equal ranges", async () => {
    const n = 100_000;
    const planted = [7, 31_337, 31_338, 99_999, 100_001];
    const provider = new Map<number, string>();
    for (let i = 1; i <= n; i++) provider.set(i, `v${i}`);
    const subscriber = new Map(provider);
    subscriber.set(7, "changed");
    subscriber.delete(31_337);
    subscriber.delete(31_338);
    subscriber.set(99_999, "changed");
    subscriber.set(100_001, "extra");
    const inRange = (k: number, r: KeyRange) => (r.after === null || k > Number(r.after[0])) && (r.upTo === null || k <= Number(r.upTo[0]));
    const sums = (m: Map<number, string>, r: KeyRange) => {
      let rows = 0;
      let sum = 0;
      for (const [k, v] of m) {
        if (!inRange(k, r)) continue;
        rows++;
        for (const ch of `${k}:${v}`) sum = (sum * 31 + ch.charCodeAt(0)) % 1_000_000_007;
      }
      return { rows, sum: String(sum) };
    };
    let scanned = 0;
    const ops = {
      checksum: async (r: KeyRange) => {
        const p = sums(provider, r);
        scanned += p.rows;
        return { provider: p, subscriber: sums(subscriber, r) };
      },
      quantiles: async (r: KeyRange, side: "provider" | "subscriber", rows: number, parts: number) => {
        const step = Math.ceil(rows / parts);
        const keys = [...(side === "provider" ? provider : subscriber).keys()].filter((k) => inRange(k, r)).sort((a, b) => a - b);
        return keys.filter((_, i) => (i + 1) % step === 0).map((k) => [String(k)]);
      },
    };
    const whole = { after: null, upTo: null };
    const result = await narrowDifferences(whole, await ops.checksum(whole), ops, { leafRows: 100, fanout: 10 });
    for (const k of planted) expect(result.ranges.some((r) => inRange(k, r)), `key ${k} located`).toBe(true);
    for (const r of result.ranges) expect(Math.max(r.provider.rows, r.subscriber.rows)).toBeLessThanOrEqual(100);
    expect(result.ranges.length).toBeLessThanOrEqual(planted.length);
    // Reported in key order.
    const ends = result.ranges.map((r) => (r.upTo === null ? Infinity : Number(r.upTo[0])));
    expect([...ends].sort((a, b) => a - b)).toEqual(ends);
    // Far less than a full scan per level.
    expect(scanned).toBeLessThan(n * 3);
  });
});

describe("plans and fix statements", () => {
  const pCols = [
    col("id", "integer"),
    col("Name \"q\"", "text"),
    col("only_provider", "text"),
    col("gen", "text"),
    col("ts", "timestamp with time zone"),
  ];
  const sCols = [
    col("ts", "timestamp with time zone"),
    col("id", "integer", { identityAlways: true }),
    col("Name \"q\"", "text"),
    col("gen", "text", { generated: true }),
    col("only_subscriber", "text"),
  ];

  it("refuses tables not ok, missing, without or with other primary keys, or of another kind", () => {
    const p = table('public."T"', pCols, ["id"]);
    const s = table('public."T"', sCols, ["id"]);
    const reason = (r: ReturnType<typeof planTable>) => (r.ok ? "ok" : r.reason);
    expect(reason(planTable("public.t", "public.t", "in-copy", p, s))).toBe("public.t: state in-copy: not in sync yet (to be copied or being copied), nothing to compare");
    expect(reason(planTable("public.t", "public.t", null, p, s))).toBe("public.t: state (none): not in sync yet (to be copied or being copied), nothing to compare");
    // A table replay stopped applying is compared: repair --apply brings it back.
    expect(reason(planTable("public.t", "public.t", "error", p, s))).toBe("ok");
    expect(reason(planTable("public.t", "public.t", "ok", null, s))).toBe("public.t: no such table on the provider");
    expect(reason(planTable("public.t", "public.u", "ok", p, null))).toBe("public.u: no such table on the subscriber");
    expect(reason(planTable("public.t", "public.t", "ok", table("public.t", pCols, []), s))).toBe("public.t: the provider table has no primary key");
    expect(reason(planTable("public.t", "public.t", "ok", p, table("public.t", sCols, [])))).toBe(
      "public.t: primary keys do not match: provider (id), subscriber none",
    );
    expect(reason(planTable("public.t", "public.t", "ok", p, table("public.t", sCols, ["id", "ts"])))).toBe(
      "public.t: primary keys do not match: provider (id), subscriber (id, ts)",
    );
    const otherType = table("public.t", [col("id", "bigint"), ...sCols.slice(2)], ["id"]);
    expect(reason(planTable("public.t", "public.t", "ok", p, otherType))).toBe(
      'public.t: primary keys do not match: "id" is integer on the provider, bigint on the subscriber',
    );
    expect(reason(planTable("public.t", "public.t", "ok", table("public.v", pCols, ["id"], "v"), s))).toBe("public.t: not a table on the provider");
  });

  it("compares the common columns, keys first, quoted; statements quote identifiers and literals", () => {
    const r = planTable('public."T"', 'public."T"', "ok", table('public."T"', pCols, ["id"]), table('public."T"', sCols, ["id"], "p"));
    if (!r.ok) throw new Error(r.reason);
    const plan: TablePlan = r.plan;
    expect(plan.columns).toEqual(["id", 'Name "q"', "ts"]);
    expect(plan.warnings).toEqual([
      'column "only_provider" is not on the subscriber: not compared',
      'column "gen" is generated on the subscriber: not compared',
      'column "only_subscriber" is only on the subscriber: not compared',
    ]);
    expect(plan.rowText).toBe('row("id", "Name ""q""", "ts")::text');
    expect(checksumQuery(plan, "provider").text).toBe(
      'select pg_catalog.count(*)::int8 as rows, coalesce(pg_catalog.sum(pg_catalog.hashtextextended(row("id", "Name ""q""", "ts")::text, 0)), 0)::text as sum from only public."T"',
    );
    // A partitioned subscriber table is read with its partitions.
    expect(mergeQuery(plan, "subscriber", { after: ["5"], upTo: null })).toEqual({
      text: 'select "id", "Name ""q""", "ts" from public."T" where "id" > $1::integer order by "id"',
      values: ["5"],
    });
    expect(keyFetchQuery(plan, "provider", [["1"], ["2"]]).text).toBe(
      'select "id", "Name ""q""", "ts" from only public."T" where ("id") in (values ($1::integer), ($2::integer)) order by "id"',
    );
    const src: Row = ["1", "it's \\ \"x\"", null];
    const dst: Row = ["1", "it's", "2024-01-01 00:00:00+00"];
    expect(insertStatement(plan, src)).toBe(
      `insert into public."T" ("id", "Name ""q""", "ts") overriding system value values ('1'::integer, 'it''s \\ "x"'::text, NULL);`,
    );
    // The partitioned subscriber table is written through its partitions (without `only`).
    expect(updateStatement(plan, src, dst)).toBe(
      `update public."T" set "Name ""q""" = 'it''s \\ "x"'::text, "ts" = NULL where "id" = '1'::integer;`,
    );
    expect(deleteStatement(plan, dst)).toBe(`delete from public."T" where "id" = '1'::integer;`);
    const plain = planTable('public."T"', 'public."T"', "ok", table('public."T"', pCols, ["id"], "p"), table('public."T"', sCols, ["id"]));
    if (!plain.ok) throw new Error(plain.reason);
    expect(updateStatement(plain.plan, src, dst)).toBe(
      `update only public."T" set "Name ""q""" = 'it''s \\ "x"'::text, "ts" = NULL where "id" = '1'::integer;`,
    );
    expect(deleteStatement(plain.plan, dst)).toBe(`delete from only public."T" where "id" = '1'::integer;`);
    expect(mergeQuery(plain.plan, "provider").text).toBe('select "id", "Name ""q""", "ts" from public."T" order by "id"');
    expect(fixStatement(plan, { kind: "delete", dst })).toBe(deleteStatement(plan, dst));
  });

  it("text keys that do not sort bytewise are ordered under collation C, on each side as needed", () => {
    const p = table("public.k", [col("k", "text"), col("v", "text")], ["k"]);
    const s = table("public.k", [col("k", "text", { byteOrdered: true }), col("v", "text")], ["k"]);
    const r = planTable("public.k", "public.k", "ok", p, s);
    if (!r.ok) throw new Error(r.reason);
    expect(mergeQuery(r.plan, "provider").text).toBe('select "k", "v" from only public.k order by "k" collate pg_catalog."C"');
    expect(mergeQuery(r.plan, "subscriber").text).toBe('select "k", "v" from only public.k order by "k"');
    expect(r.plan.keyKinds).toEqual(["bytes"]);
  });
});
