/**
 * The pure parts of replay's apply step, without a database: which
 * changes share a statement (runs), how a stretch of changes to
 * commuting tables is laid out in layers (segments), the statements
 * built from a table's shape, and which failures of a grouped statement
 * are retried row by row.
 */
import { describe, expect, it } from "vitest";
import { ApplyError } from "../../shared/londiste/apply.ts";
import { retriedRowByRow } from "../../shared/londiste/apply/executor.ts";
import {
  inOrderRuns,
  looksForSegment,
  MIN_SEGMENT,
  nextStep,
  planSegment,
  type PlannedTable,
  type PlanOptions,
  runEnd,
  segmentTables,
  signature,
} from "../../shared/londiste/apply/plan.ts";
import { changeStatement, groupedStatement, type GroupedChange, type TableRef, textArrayLiteral } from "../../shared/londiste/apply/statements.ts";
import type { RowChange } from "../../shared/londiste/change-event.ts";
import type { ColumnShape, TableShape } from "../../shared/londiste/table-shape.ts";

type Row = Record<string, string | null>;
const ins = (table: string, row: Row): RowChange => ({ op: "insert", table, row: new Map(Object.entries(row)) });
const upd = (table: string, key: Row, row: Row): RowChange => ({
  op: "update",
  table,
  row: new Map(Object.entries(row)),
  key: new Map(Object.entries(key)),
});
const del = (table: string, key: Row): RowChange => ({ op: "delete", table, key: new Map(Object.entries(key)) });
const trunc = (table: string): RowChange => ({ op: "truncate", table });

const col = (name: string, castType = "integer", extra: Partial<ColumnShape> = {}): ColumnShape => ({
  name,
  type: castType,
  castType,
  generated: false,
  identityAlways: false,
  ...extra,
});

let oid = 1000;
function shape(name: string, columns: ColumnShape[], primaryKey = ["id"], relkind = "r"): TableShape {
  return { requested: name, name, oid: oid++, relkind, columns: new Map(columns.map((c) => [c.name, c])), primaryKey };
}

const GROUP: PlanOptions = { group: true, maxGroupRows: 1000 };
const ROW_BY_ROW: PlanOptions = { group: false, maxGroupRows: 1000 };

function lookup(tables: Record<string, { shape: TableShape; commutes?: boolean; insertOrder?: boolean }>) {
  const planned = new Map<string, PlannedTable>(
    Object.entries(tables).map(([table, t]) => [
      table,
      { ref: { table, shape: t.shape }, kind: { commutes: t.commutes ?? true, insertOrder: t.insertOrder ?? false } },
    ]),
  );
  return (table: string) => planned.get(table);
}

const A = shape("public.a", [col("id"), col("v", "text")]);
const B = shape("public.b", [col("id"), col("v", "text")]);

describe("runs", () => {
  it("consecutive changes of one kind, table and columns share a run; a key change, a truncate or a repeated key ends it", () => {
    const changes = [
      ins("public.a", { id: "1", v: "x" }),
      ins("public.a", { id: "2", v: "y" }),
      ins("public.a", { id: "3" }), // other columns
      upd("public.a", { id: "1" }, { id: "1", v: "u" }),
      upd("public.a", { id: "2" }, { id: "2", v: "u" }),
      upd("public.a", { id: "1" }, { id: "1", v: "again" }), // key twice
      upd("public.a", { id: "3" }, { id: "4", v: "moved" }), // key change
      del("public.a", { id: "1" }),
      del("public.a", { id: "2" }),
      del("public.a", { id: "4" }),
      trunc("public.a"),
    ];
    expect(inOrderRuns(changes, 0, changes.length, GROUP)).toEqual([
      { from: 0, to: 2, grouped: true },
      { from: 2, to: 3, grouped: false },
      { from: 3, to: 5, grouped: false }, // two updates: under MIN_GUARDED_RUN
      { from: 5, to: 6, grouped: false },
      { from: 6, to: 7, grouped: false },
      { from: 7, to: 10, grouped: true },
      { from: 10, to: 11, grouped: false },
    ]);
    expect(signature(changes[6]!)).toBeNull();
    expect(signature(changes[10]!)).toBeNull();
    // Per-row mode: every change on its own.
    expect(inOrderRuns(changes, 0, 3, ROW_BY_ROW).map((r) => r.to - r.from)).toEqual([1, 1, 1]);
  });

  it("a run stops at maxGroupRows and at the limit", () => {
    const changes = Array.from({ length: 10 }, (_, i) => ins("public.a", { id: String(i) }));
    expect(runEnd(changes, 0, 10, { group: true, maxGroupRows: 4 })).toBe(4);
    expect(runEnd(changes, 2, 5, GROUP)).toBe(5);
  });
});

describe("segments", () => {
  it("interleaved inserts, updates and deletes of distinct rows of commuting tables: one group per kind and table", () => {
    const changes = [
      ins("public.a", { id: "1", v: "x" }),
      del("public.b", { id: "7" }),
      upd("public.a", { id: "5" }, { id: "5", v: "u" }),
      ins("public.a", { id: "2", v: "y" }),
      del("public.b", { id: "8" }),
      upd("public.a", { id: "6" }, { id: "6", v: "u" }),
    ];
    const look = lookup({ "public.a": { shape: A }, "public.b": { shape: B } });
    expect(looksForSegment(changes, 0, GROUP)).toBe(true);
    expect(segmentTables(changes, 0, GROUP)).toEqual(["public.a", "public.b"]);
    const step = nextStep(changes, 0, GROUP, look);
    expect(step.kind).toBe("segment");
    if (step.kind !== "segment") return;
    expect(step.end).toBe(6);
    // Layer 1 only: deletes, then updates, then inserts.
    expect(step.groups.map((g) => [g.layer, g.changes[0]!.op, g.changes.length])).toEqual([
      [1, "delete", 2],
      [1, "update", 2],
      [1, "insert", 2],
    ]);
  });

  it("a row's k-th change goes to layer k; inserts keep their order where the table has defaults", () => {
    const changes = [
      ins("public.a", { id: "1", v: "x" }),
      upd("public.a", { id: "1" }, { id: "1", v: "y" }),
      del("public.a", { id: "1" }),
      ins("public.a", { id: "2", v: "z" }),
    ];
    const free = planSegment(changes, 0, GROUP, lookup({ "public.a": { shape: A } }));
    expect(free.end).toBe(4);
    expect([...free.groups.values()].map((g) => [g.layer, g.changes.map((c) => c.op)])).toEqual([
      [1, ["insert", "insert"]],
      [2, ["update"]],
      [3, ["delete"]],
    ]);
    // Under insertOrder an insert may not go to a lower layer than an earlier insert into its table: here both are in layer 1.
    const ordered = planSegment(changes, 0, GROUP, lookup({ "public.a": { shape: A, insertOrder: true } }));
    expect(ordered.end).toBe(4);
    // Here the earlier insert is in layer 3 and the next would be in layer 1: under insertOrder the segment ends.
    const later = [ins("public.a", { id: "1" }), del("public.a", { id: "1" }), ins("public.a", { id: "1" }), ins("public.a", { id: "2" })];
    expect(planSegment(later, 0, GROUP, lookup({ "public.a": { shape: A, insertOrder: true } })).end).toBe(3);
    expect(planSegment(later, 0, GROUP, lookup({ "public.a": { shape: A } })).end).toBe(4);
  });

  it("ends at a table that does not commute or cannot be resolved, a key change, a truncate, or a change with a column error", () => {
    const look = lookup({ "public.a": { shape: A }, "public.b": { shape: B, commutes: false } });
    const base = [ins("public.a", { id: "1" }), ins("public.a", { id: "2" }), ins("public.a", { id: "3" })];
    expect(planSegment([...base, ins("public.b", { id: "1" })], 0, GROUP, look).end).toBe(3);
    expect(planSegment([...base, ins("public.gone", { id: "1" })], 0, GROUP, look).end).toBe(3);
    expect(planSegment([...base, upd("public.a", { id: "9" }, { id: "10" })], 0, GROUP, look).end).toBe(3);
    expect(planSegment([...base, trunc("public.a")], 0, GROUP, look).end).toBe(3);
    expect(planSegment([...base, ins("public.a", { id: "4", nope: "x" })], 0, GROUP, look).end).toBe(3);
    expect(segmentTables([...base, trunc("public.b"), ins("public.b", { id: "1" })], 0, GROUP)).toEqual(["public.a"]);
  });

  it("short stretches, or ones that save no statement, are applied in order", () => {
    const look = lookup({ "public.a": { shape: A } });
    const three = [ins("public.a", { id: "1" }), ins("public.a", { id: "2" }), ins("public.a", { id: "3" })];
    expect(looksForSegment(three, 0, GROUP)).toBe(false);
    expect(three.length).toBeLessThan(MIN_SEGMENT);
    expect(nextStep(three, 0, GROUP, look)).toEqual({ kind: "in-order", end: 3 });
    // Every change its own group (a row changed four times): in order, up to the segment's end.
    const sameRow = [
      upd("public.a", { id: "1" }, { id: "1", v: "a" }),
      upd("public.a", { id: "1" }, { id: "1", v: "b" }),
      upd("public.a", { id: "1" }, { id: "1", v: "c" }),
      upd("public.a", { id: "1" }, { id: "1", v: "d" }),
    ];
    expect(nextStep(sameRow, 0, GROUP, look)).toEqual({ kind: "in-order", end: 4 });
    expect(nextStep(sameRow, 0, ROW_BY_ROW, look)).toEqual({ kind: "in-order", end: 1 });
  });
});

describe("statements", () => {
  const T: TableRef = {
    table: "public.t",
    shape: shape('public."T"', [col("id"), col("Name", "text"), col("gen", "text", { generated: true }), col("ident", "bigint", { identityAlways: true })]),
  };
  const P: TableRef = { table: "public.p", shape: shape("public.p", [col("id"), col("v", "text")], ["id"], "p") };

  it("per change: quoted columns, typed parameters, `only` except for a partitioned table", () => {
    expect(changeStatement(T, ins("public.t", { id: "1", Name: "x", gen: "g", ident: "5" }))).toEqual({
      sql: 'insert into public."T" ("id", "Name", "ident") overriding system value values ($1::integer, $2::text, $3::bigint)',
      params: ["1", "x", "5"],
    });
    expect(changeStatement(T, upd("public.t", { id: "1" }, { id: "1", Name: null, ident: "5" }))).toEqual({
      sql: 'update only public."T" set "id" = $1::integer, "Name" = $2::text where "id" = $3::integer and "ident" is not distinct from $4::bigint',
      params: ["1", null, "1", "5"],
    });
    expect(changeStatement(P, del("public.p", { id: "1" })).sql).toBe('delete from public.p where "id" = $1::integer');
    expect(changeStatement(T, trunc("public.t")).sql).toBe('truncate only public."T"');
    expect(changeStatement(P, trunc("public.p")).sql).toBe("truncate public.p");
    expect(() => changeStatement(T, ins("public.t", { id: "1", missing: "x" }))).toThrow(
      new ApplyError('public."T": column "missing" does not exist on dest side', "public.t", undefined, undefined, "missing"),
    );
  });

  it("grouped: unnest of text[] parameters; updates only by exactly the primary key and without identity ALWAYS columns", () => {
    const run = [upd("public.p", { id: "1" }, { id: "1", v: "a" }), upd("public.p", { id: "2" }, { id: "2", v: null })] as GroupedChange[];
    expect(groupedStatement(P, run)).toEqual({
      sql: 'update public.p as t set "id" = u.c1::integer, "v" = u.c2::text from unnest($1::text[], $2::text[], $3::text[]) as u(k1, c1, c2) where t."id" = u.k1::integer',
      params: ['{"1","2"}', '{"1","2"}', '{"a",NULL}'],
    });
    expect(groupedStatement(T, [upd("public.t", { id: "1" }, { id: "1", ident: "2" })] as GroupedChange[])).toBeNull();
    expect(groupedStatement(P, [del("public.p", { v: "x" })] as GroupedChange[])).toBeNull();
  });
});

describe("text[] parameters", () => {
  it("are the array literal node-postgres would send, quotes and backslashes escaped, NULL for null", () => {
    expect(textArrayLiteral([])).toBe("{}");
    expect(textArrayLiteral(["a", null, "", "NULL", 'say "hi"', "back\\slash", "{x,y}"])).toBe(
      '{"a",NULL,"","NULL","say \\"hi\\"","back\\\\slash","{x,y}"}',
    );
  });
});

describe("which failures of a grouped statement are retried row by row", () => {
  const pgError = (code: string) => Object.assign(new Error(`error ${code}`), { code });
  it("data errors with a SQLSTATE only", () => {
    expect(retriedRowByRow(pgError("23505"))).toBe(true); // unique_violation
    expect(retriedRowByRow(pgError("22P02"))).toBe(true); // invalid_text_representation
    expect(retriedRowByRow(pgError("P0001"))).toBe(true); // a trigger's RAISE
    expect(retriedRowByRow(pgError("42501"))).toBe(false); // insufficient_privilege
    expect(retriedRowByRow(pgError("40001"))).toBe(false); // serialization_failure
    expect(retriedRowByRow(pgError("55P03"))).toBe(false); // lock_not_available
    expect(retriedRowByRow(pgError("57P01"))).toBe(false); // admin_shutdown
    expect(retriedRowByRow(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))).toBe(false);
    expect(retriedRowByRow(new ApplyError("no row", "public.t"))).toBe(false); // no SQLSTATE
    expect(retriedRowByRow(new Error("Connection terminated unexpectedly"))).toBe(false);
  });
});
