/**
 * Applying repair's fix statements (services/repair/fixes.ts) without a
 * database: one round trip for a chunk, and a statement that changes
 * other than exactly its one row is an error naming the row.
 */
import { describe, expect, it } from "vitest";
import { applyFixStatements, type Fix, FixRowCountError } from "../../services/repair/fixes.ts";
import type { DescribedColumn } from "../../shared/londiste/compare/describe.ts";
import type { RowDiff } from "../../shared/londiste/compare/merge.ts";
import { fixStatement, planTable, type TablePlan } from "../../shared/londiste/compare/plan.ts";

const col = (name: string, castType: string): DescribedColumn => ({
  name,
  type: castType,
  castType,
  baseTypeOid: castType === "integer" ? 23 : 25,
  collatable: castType === "text",
  byteOrdered: false,
  generated: false,
  identityAlways: false,
});

function plan(): TablePlan {
  const t = { name: "public.t", relkind: "p", columns: [col("id", "integer"), col("v", "text")], primaryKey: ["id"] };
  const r = planTable("public.t", "public.t", "ok", t, t);
  if (!r.ok) throw new Error(r.reason);
  return r.plan;
}

/** A client answering a multi-statement query with the given row counts, one result per statement. */
function fakeClient(rowCounts: number[]) {
  const sent: string[] = [];
  return {
    sent,
    query: (text: string) => {
      sent.push(text);
      const results = rowCounts.map((rowCount) => ({ rowCount, rows: [] }));
      return Promise.resolve(results.length === 1 ? results[0] : results);
    },
  };
}

const fixes = (p: TablePlan, diffs: RowDiff[]): Fix[] => diffs.map((diff) => ({ diff, statement: fixStatement(p, diff) }));

describe("applying fixes", () => {
  const p = plan();
  const diffs: RowDiff[] = [
    { kind: "insert", src: ["1", "a"] },
    { kind: "update", src: ["2", "b"], dst: ["2", "x"] },
    { kind: "delete", dst: ["3", "c"] },
  ];

  it("sends a chunk as one query and accepts one row per statement", async () => {
    const client = fakeClient([1, 1, 1]);
    await applyFixStatements(client as never, p, fixes(p, diffs));
    expect(client.sent).toEqual([
      [
        `insert into public.t ("id", "v") values ('1'::integer, 'a'::text);`,
        `update public.t set "v" = 'b'::text where "id" = '2'::integer;`,
        `delete from public.t where "id" = '3'::integer;`,
      ].join("\n"),
    ]);
    const one = fakeClient([1]);
    await applyFixStatements(one as never, p, fixes(p, diffs.slice(0, 1)));
    await applyFixStatements(one as never, p, []);
    expect(one.sent).toHaveLength(1);
  });

  it("a statement that changed no row or several is an error naming the table, the kind and the key", async () => {
    const none = applyFixStatements(fakeClient([1, 0, 1]) as never, p, fixes(p, diffs));
    await expect(none).rejects.toBeInstanceOf(FixRowCountError);
    await expect(none).rejects.toThrow(
      `public.t: the update of the row with key '2' changed 0 rows, not 1 (update public.t set "v" = 'b'::text where "id" = '2'::integer;)`,
    );
    await expect(applyFixStatements(fakeClient([1, 1, 2]) as never, p, fixes(p, diffs))).rejects.toThrow(
      /^public\.t: the delete of the row with key '3' changed 2 rows, not 1/,
    );
  });
});
