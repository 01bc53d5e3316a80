/**
 * applyChanges (shared/londiste/apply.ts): replay's apply step on a
 * subscriber database. Missing rows in both modes, missing tables and
 * columns, table redirection, user triggers silenced, grouped and per-row
 * apply giving the same table, the applier session's settings not
 * mattering, and the transaction contract. (The byte-exact torture replay
 * of every value kind is in encoding.test.ts, which also uses applyChanges.)
 */
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { withTransaction } from "../../shared/db/transaction.ts";
import { applyChanges, ApplyError, MAX_MISSED_LISTED, type ApplyOptions, type ApplyReport } from "../../shared/londiste/apply.ts";
import { decodeChange, type RowChange } from "../../shared/londiste/change-event.ts";
import { readTableShape } from "../../shared/londiste/table-shape.ts";
import { finishBatch, getBatchEvents, installPgq, nextBatch, registerConsumer, tickNow } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { num } from "../support/query.ts";

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

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("lond_apply");
});

afterAll(async () => {
  await db?.drop();
});

function apply(changes: RowChange[], options: Partial<ApplyOptions> = {}): Promise<ApplyReport> {
  return withTransaction(db.pool, (client) => applyChanges(client, changes, { onMissingRow: "error", ...options }));
}

async function rows(table: string, order = "1"): Promise<string[]> {
  const { rows: r } = await db.query<{ r: string }>(`select x::text as r from ${table} x order by ${order}`);
  return r.map((x) => x.r);
}

describe("missing rows", () => {
  beforeAll(async () => {
    await db.query("create table miss (id int primary key, v text)");
  });

  it("'error' mode throws naming table, operation and key, and the caller's transaction rolls back", async () => {
    await db.query("truncate miss; insert into miss values (1, 'a')");
    const err = await apply([upd("public.miss", { id: "1" }, { id: "1", v: "changed" }), upd("public.miss", { id: "2" }, { id: "2", v: "x" })]).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplyError);
    expect((err as ApplyError).message).toBe('public.miss: update found no row with key {"id":"2"}');
    expect((err as ApplyError).op).toBe("update");
    expect((err as ApplyError).key).toEqual({ id: "2" });
    expect(await rows("miss")).toEqual(["(1,a)"]); // the first update was rolled back with the rest

    await expect(apply([del("public.miss", { id: "3" })])).rejects.toThrow('public.miss: delete found no row with key {"id":"3"}');
    // a grouped delete run with one missing key finds it too
    await expect(apply([del("public.miss", { id: "1" }), del("public.miss", { id: "4" })])).rejects.toThrow(
      'public.miss: delete found no row with key {"id":"4"}',
    );
    expect(await rows("miss")).toEqual(["(1,a)"]);
  });

  it("'log' mode counts and lists missed rows per table and op, and goes on", async () => {
    await db.query("truncate miss; insert into miss select g, 'r' || g from generate_series(1, 3) g");
    const logged: Array<[string, Record<string, unknown>]> = [];
    const report = await apply(
      [
        upd("public.miss", { id: "9" }, { id: "9", v: "nope" }),
        upd("public.miss", { id: "1" }, { id: "1", v: "one" }),
        del("public.miss", { id: "2" }),
        del("public.miss", { id: "8" }),
        del("public.miss", { id: "3" }),
        ins("public.miss", { id: "4", v: "four" }),
      ],
      { onMissingRow: "log", log: (msg, details) => logged.push([msg, details]) },
    );
    expect(await rows("miss")).toEqual(["(1,one)", "(4,four)"]);
    expect(report.tables.get("public.miss")).toEqual({
      destTable: "public.miss",
      inserts: 1,
      updates: 1,
      deletes: 2,
      truncates: 0,
      missedUpdates: 1,
      missedDeletes: 1,
    });
    expect(report.missedTotal).toBe(2);
    expect(report.missed).toEqual([
      { table: "public.miss", destTable: "public.miss", op: "update", key: { id: "9" } },
      { table: "public.miss", destTable: "public.miss", op: "delete", key: { id: "8" } },
    ]);
    expect(logged.map(([msg, d]) => [msg, d.key])).toEqual([
      ["update found no row", { id: "9" }],
      ["delete found no row", { id: "8" }],
    ]);
    expect(report.changes).toBe(6);
  });

  it("the list of missed keys is capped, the counts are not", async () => {
    await db.query("truncate miss; insert into miss values (1000, 'kept')");
    const changes = Array.from({ length: 150 }, (_, i) => del("public.miss", { id: String(i) }));
    const report = await apply(changes, { onMissingRow: "log" });
    expect(report.missedTotal).toBe(150);
    expect(report.missed).toHaveLength(MAX_MISSED_LISTED);
    expect(report.tables.get("public.miss")!.missedDeletes).toBe(150);
    expect(await rows("miss")).toEqual(["(1000,kept)"]);
  });

  it("an update or delete hitting several rows is an error in both modes", async () => {
    await db.query("create table no_key (id int, v text); insert into no_key values (1, 'a'), (1, 'b')");
    await expect(apply([del("public.no_key", { id: "1" })], { onMissingRow: "log" })).rejects.toThrow(/hit 2 rows/);
    expect(await num(db.pool, "select count(*) from no_key")).toBe(2);
  });

  it("an insert of an existing key fails with the database's unique violation", async () => {
    await db.query("truncate miss; insert into miss values (1, 'a')");
    await expect(apply([ins("public.miss", { id: "1", v: "dup" })])).rejects.toMatchObject({ code: "23505" });
    await expect(apply([ins("public.miss", { id: "2", v: "x" }), ins("public.miss", { id: "1", v: "dup" })])).rejects.toMatchObject({
      code: "23505",
    });
    expect(await rows("miss")).toEqual(["(1,a)"]);
  });
});

describe("tables and columns", () => {
  beforeAll(async () => {
    await db.query(`
      create schema "Other Schema";
      create table "Other Schema"."Odd ""Name""" (id int primary key, v text);
      create table shaped (
        id int primary key,
        v varchar(3),
        doubled int generated always as (id * 2) stored,
        extra text default 'dflt',
        ident int generated always as identity);
      create table keep_me (id int)`);
  });

  it("a table missing on the subscriber is an error naming it; names are resolved, never spliced", async () => {
    await expect(apply([ins("public.nowhere", { id: "1" })])).rejects.toThrow("table public.nowhere does not exist on the subscriber");
    await expect(apply([ins("public.keep_me; drop table keep_me", { id: "1" })])).rejects.toThrow(
      "table name public.keep_me; drop table keep_me is not a valid [schema.]table name",
    );
    await expect(apply([ins(`public."keep_me; drop table keep_me"`, { id: "1" })])).rejects.toThrow(/does not exist on the subscriber/);
    await expect(apply([ins("public.KEEP_ME", { id: "1" })])).resolves.toBeDefined(); // folded like SQL does
    expect(await num(db.pool, "select count(*) from keep_me")).toBe(1); // still there
    await db.query("truncate keep_me");
    await expect(apply([ins("public.nowhere", { id: "1" })], { destTable: () => "public.also_nowhere" })).rejects.toThrow(
      "table public.also_nowhere (for provider table public.nowhere) does not exist on the subscriber",
    );
  });

  it("a provider column missing on the subscriber is an error naming table and column", async () => {
    const err = await apply([ins("public.shaped", { id: "1", v: "a", gone: "x" })]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect((err as ApplyError).message).toBe('public.shaped: column "gone" does not exist on dest side');
    expect((err as ApplyError).column).toBe("gone");
    await expect(apply([del("public.shaped", { gone: "1" })])).rejects.toThrow('column "gone" does not exist on dest side');
  });

  it("generated columns are recomputed, extra columns get defaults, typmods apply as on assignment", async () => {
    await apply([
      ins("public.shaped", { id: "1", v: "abc", doubled: "999" }),
      ins("public.shaped", { id: "2", v: "de", doubled: "999" }),
      upd("public.shaped", { id: "2" }, { id: "3", v: "fgh", doubled: "999" }),
    ]);
    expect(await rows("shaped")).toEqual(["(1,abc,2,dflt,1)", "(3,fgh,6,dflt,2)"]);
    // too long for varchar(3): an error as on the provider, not a silent truncation
    await expect(apply([ins("public.shaped", { id: "4", v: "abcd" })])).rejects.toThrow(/too long/);
    // an identity column sent by the provider is written as sent
    await apply([ins("public.shaped", { id: "5", v: "x", ident: "77" })]);
    expect(await rows("shaped", "id")).toContain("(5,x,10,dflt,77)");
  });

  it("destTable redirects a provider table to another subscriber table, quoted names included", async () => {
    const report = await apply(
      [ins("public.src", { id: "1", v: "a" }), ins("public.src", { id: "2", v: "b" }), upd("public.src", { id: "1" }, { id: "1", v: "c" })],
      { destTable: (t) => (t === "public.src" ? `"Other Schema"."Odd ""Name"""` : t) },
    );
    expect(await rows(`"Other Schema"."Odd ""Name"""`)).toEqual(["(1,c)", "(2,b)"]);
    expect(report.tables.get("public.src")).toMatchObject({ destTable: `"Other Schema"."Odd ""Name"""`, inserts: 2, updates: 1 });
  });

  it("reads a table's shape with its primary key and generated columns", async () => {
    const shape = (await readTableShape(db.pool, "public.shaped"))!;
    expect(shape.name).toBe("public.shaped");
    expect(shape.primaryKey).toEqual(["id"]);
    expect([...shape.columns.values()].map((c) => [c.name, c.type, c.castType, c.generated, c.identityAlways])).toEqual([
      ["id", "integer", "integer", false, false],
      ["v", "character varying(3)", "character varying", false, false],
      ["doubled", "integer", "integer", true, false],
      ["extra", "text", "text", false, false],
      ["ident", "integer", "integer", false, true],
    ]);
    expect(await readTableShape(db.pool, "public.nowhere")).toBeNull();
  });
});

describe("truncate and triggers", () => {
  beforeAll(async () => {
    await db.query(`
      create table audited (id int primary key, v text);
      create table audit_log (what text);
      create function audit() returns trigger language plpgsql as $$
        begin insert into audit_log values (tg_op); return null; end $$;
      create trigger audit_rows after insert or update or delete on audited for each row execute function audit();
      create trigger audit_truncate after truncate on audited for each statement execute function audit();
      create table parent (id int primary key);
      create table child () inherits (parent)`);
  });

  it("user triggers on the subscriber table do not fire during apply", async () => {
    // they do fire for an ordinary write, so the check below can fail
    await db.query("insert into audited values (0, 'direct')");
    expect(await num(db.pool, "select count(*) from audit_log")).toBe(1);
    await db.query("truncate audit_log");
    await apply([
      ins("public.audited", { id: "1", v: "a" }),
      ins("public.audited", { id: "2", v: "b" }),
      upd("public.audited", { id: "1" }, { id: "1", v: "c" }),
      del("public.audited", { id: "2" }),
      trunc("public.audited"),
      ins("public.audited", { id: "3", v: "d" }),
    ]);
    expect(await rows("audited")).toEqual(["(3,d)"]);
    expect(await num(db.pool, "select count(*) from audit_log")).toBe(0);
  });

  it("truncate is `truncate only`: inheriting tables keep their rows", async () => {
    await db.query("insert into parent values (1); insert into child values (2)");
    const report = await apply([trunc("public.parent")]);
    expect(await rows("only parent")).toEqual([]);
    expect(await rows("child")).toEqual(["(2)"]);
    expect(report.tables.get("public.parent")!.truncates).toBe(1);
  });
});

describe("grouped apply", () => {
  const cols = "(a int, b text, c numeric, d timestamptz, primary key (a, b))";
  beforeAll(async () => {
    await db.query(`create table g_grouped ${cols}; create table g_rowwise ${cols}`);
  });

  function workload(): RowChange[] {
    const t = "public.src";
    const out: RowChange[] = [];
    const row = (i: number): Row => ({
      a: String(i),
      b: i % 7 === 0 ? "" : `k"${i},\\{x}`,
      c: i % 5 === 0 ? null : `${i}.5`,
      d: `2024-01-01 00:00:${String(i % 60).padStart(2, "0")}+00`,
    });
    const key = (i: number): Row => ({ a: String(i), b: row(i).b });
    for (let i = 0; i < 1000; i++) out.push(ins(t, row(i))); // one run of 1000 inserts
    for (let i = 0; i < 1000; i += 2) out.push(del(t, key(i))); // 500 deletes
    out.push(upd(t, key(1), { ...row(1), c: "-1" }));
    for (let i = 1000; i < 1010; i++) out.push(ins(t, row(i)));
    out.push(del(t, key(1005)), ins(t, row(1005))); // delete then re-insert: order matters
    out.push(del(t, key(3)), del(t, key(3)), del(t, key(2)), del(t, key(5))); // repeated and already deleted keys
    out.push(ins(t, row(2)));
    return out;
  }

  it("1000-row runs of inserts and deletes give the same table and report as per-row apply, in fewer statements", async () => {
    const changes = workload();
    const grouped = await apply(changes, { destTable: () => "public.g_grouped", onMissingRow: "log" });
    const rowwise = await apply(changes, { destTable: () => "public.g_rowwise", onMissingRow: "log", group: false });
    const a = await rows("g_grouped", "a, b");
    expect(a).toHaveLength(1000 - 500 + 10 - 2 + 1);
    expect(a).toEqual(await rows("g_rowwise", "a, b"));
    const { destTable: _g, ...gStats } = grouped.tables.get("public.src")!;
    const { destTable: _r, ...rStats } = rowwise.tables.get("public.src")!;
    expect(gStats).toEqual(rStats);
    expect(gStats).toMatchObject({ inserts: 1012, deletes: 503, updates: 1, missedDeletes: 2 });
    const keysOf = (r: ApplyReport) => r.missed.map((m) => [m.op, m.key]);
    expect(keysOf(grouped)).toEqual(keysOf(rowwise));
    expect(keysOf(grouped)).toHaveLength(2);
    expect(grouped.changes).toBe(changes.length);
    expect(rowwise.statements).toBe(changes.length);
    expect(grouped.statements).toBeLessThan(30);
  });
});

describe("grouped updates", () => {
  // Same shape for the grouped and the per-row copy; `u` is a column named like the unnest alias.
  const cols = `(a int, b text, c numeric, d timestamptz, e text, u int, primary key (a, b), check (c is null or c <> 666))`;
  const tables = ["gu_grouped", "gu_rowwise"];
  beforeAll(async () => {
    await db.query(tables.map((t) => `create table ${t} ${cols}`).join("; "));
  });

  /** Deterministic PRNG (mulberry32), so a failing seed can be replayed. */
  function prng(seed: number): () => number {
    let x = seed >>> 0;
    return () => {
      x = (x + 0x6d2b79f5) >>> 0;
      let t = x;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const T = "public.src";
  const bOf = (a: number) => (a % 3 === 0 ? "" : a % 3 === 1 ? `k"${a},\\{x}` : "NULL");
  const initial = Array.from({ length: 60 }, (_, a) => a);

  /**
   * A random mix of inserts, deletes, updates with and without key changes, bursts of updates
   * (the case grouping is for) with repeated keys, NULLs, missing rows and the odd truncate.
   */
  function randomWorkload(seed: number, n: number, table = T): RowChange[] {
    const rnd = prng(seed);
    const pick = <X>(xs: X[]): X => xs[Math.floor(rnd() * xs.length)]!;
    const live = new Set(initial); // keys (a) believed to exist, as the provider saw them
    let fresh = 1000;
    const value = (): Row => ({
      c: rnd() < 0.2 ? null : rnd() < 0.1 ? "-0.000" : String(Math.floor(rnd() * 1e6) / 100),
      d: rnd() < 0.2 ? null : `2024-0${1 + Math.floor(rnd() * 9)}-1${Math.floor(rnd() * 9)} 0${Math.floor(rnd() * 9)}:00:00+0${Math.floor(rnd() * 9)}`,
      e: rnd() < 0.2 ? null : rnd() < 0.2 ? "" : pick(["x", "NULL", 'q"\'\\', "ünï ✓", "a,b"]),
      u: rnd() < 0.3 ? null : String(Math.floor(rnd() * 100)),
    });
    const key = (a: number): Row => ({ a: String(a), b: bOf(a) });
    const someKey = (): number => {
      const r = rnd();
      if (r < 0.03) return 5000 + Math.floor(rnd() * 50); // a row that is not there
      const keys = [...live];
      return keys.length ? pick(keys) : 5000;
    };
    const out: RowChange[] = [];
    while (out.length < n) {
      const r = rnd();
      if (r < 0.45) {
        // a burst of updates without key change; keys may repeat, some miss
        const len = 1 + Math.floor(rnd() * 40);
        const recent: number[] = [];
        for (let i = 0; i < len; i++) {
          const a = recent.length && rnd() < 0.1 ? pick(recent) : someKey();
          recent.push(a);
          out.push(upd(table, key(a), { ...key(a), ...value() }));
        }
      } else if (r < 0.55) {
        const from = someKey();
        const to = rnd() < 0.5 ? fresh++ : pick(initial); // a fresh key, or maybe one in use (unique violation)
        if (live.has(to) && to !== from) continue; // the provider could not have done that
        out.push(upd(table, key(from), { ...key(to), ...value() }));
        if (live.delete(from)) live.add(to);
      } else if (r < 0.72) {
        const len = 1 + Math.floor(rnd() * 10);
        for (let i = 0; i < len; i++) {
          const a = fresh++;
          live.add(a);
          out.push(ins(table, { ...key(a), ...value() }));
        }
      } else if (r < 0.99) {
        const len = 1 + Math.floor(rnd() * 12);
        for (let i = 0; i < len; i++) {
          const a = someKey();
          live.delete(a);
          out.push(del(table, key(a)));
        }
      } else {
        out.push(trunc(table));
        live.clear();
      }
    }
    return out;
  }

  async function reset(): Promise<void> {
    const fill = `select a, case a % 3 when 0 then '' when 1 then 'k"' || a || ',\\{x}' else 'NULL' end, a, null, 'init', a from generate_series(0, 59) a`;
    await db.query(tables.map((t) => `truncate ${t}; insert into ${t} ${fill}`).join("; "));
  }

  async function compare(changes: RowChange[], options: Partial<ApplyOptions> = {}): Promise<{ grouped: ApplyReport; rowwise: ApplyReport }> {
    await reset();
    const grouped = await apply(changes, { destTable: () => "public.gu_grouped", onMissingRow: "log", ...options });
    const rowwise = await apply(changes, { destTable: () => "public.gu_rowwise", onMissingRow: "log", ...options, group: false });
    expect(await rows("gu_grouped", "a, b")).toEqual(await rows("gu_rowwise", "a, b"));
    const { destTable: _g, ...gStats } = grouped.tables.get(T)!;
    const { destTable: _r, ...rStats } = rowwise.tables.get(T)!;
    expect(gStats).toEqual(rStats);
    expect(grouped.missed.map((m) => [m.op, m.key])).toEqual(rowwise.missed.map((m) => [m.op, m.key]));
    expect(grouped.missedTotal).toBe(rowwise.missedTotal);
    expect(grouped.changes).toBe(changes.length);
    expect(rowwise.changes).toBe(changes.length);
    expect(rowwise.statements).toBe(changes.length);
    return { grouped, rowwise };
  }

  it("a run of updates is one statement, and gives the per-row table", async () => {
    const changes = initial.map((a) => upd(T, { a: String(a), b: bOf(a) }, { a: String(a), b: bOf(a), c: `${a}.5`, d: null, e: "", u: null }));
    const { grouped } = await compare(changes);
    expect(grouped.statements).toBe(1);
    expect(grouped.tables.get(T)!.updates).toBe(60);
  });

  it("random mixed workloads with repeated keys, key changes, NULLs and missing rows: same as per-row apply", async () => {
    let groupedStatements = 0;
    let rowwiseStatements = 0;
    let misses = 0;
    for (let seed = 1; seed <= 25; seed++) {
      const changes = randomWorkload(seed, 400);
      const maxGroupRows = seed % 5 === 0 ? 7 : undefined; // also runs cut at a small size
      const { grouped, rowwise } = await compare(changes, maxGroupRows ? { maxGroupRows } : {});
      groupedStatements += grouped.statements;
      rowwiseStatements += rowwise.statements;
      misses += grouped.missedTotal;
    }
    expect(misses).toBeGreaterThan(50); // the workloads do miss rows, so the fallback ran
    expect(groupedStatements).toBeLessThan(rowwiseStatements * 0.6);
  });

  it("interleaved tables — commuting, with another unique index, with an ALWAYS trigger — same as per-row apply", async () => {
    const kinds = ["plain", "uniq", "trig"] as const;
    const fill = `select a, case a % 3 when 0 then '' when 1 then 'k"' || a || ',\\{x}' else 'NULL' end, a, null, 'init', a from generate_series(0, 59) a`;
    await db.query(`
      create table gm_log_g (n serial, what text);
      create table gm_log_r (n serial, what text);
      create function gm_log() returns trigger language plpgsql as $$
        begin
          execute format('insert into %I (what) values ($1)', tg_argv[0])
            using tg_op || ' ' || coalesce(new.a, old.a) || ' ' || coalesce(new.c::text, '-');
          return null;
        end $$;
      create function gm_log_statement() returns trigger language plpgsql as $$
        begin execute format('insert into %I (what) values ($1)', tg_argv[0]) using 'statement ' || tg_op; return null; end $$`);
    for (const k of kinds) {
      for (const side of ["g", "r"]) {
        await db.query(`create table gm_${k}_${side} ${cols}`);
        if (k === "uniq") await db.query(`create unique index on gm_${k}_${side} (a, b, u)`); // never violated, but not only the key
        if (k === "trig") {
          await db.query(`create trigger log_rows after insert or update or delete on gm_${k}_${side}
              for each row execute function gm_log('gm_log_${side}');
            create trigger log_statements after insert or update or delete on gm_${k}_${side}
              for each statement execute function gm_log_statement('gm_log_${side}');
            alter table gm_${k}_${side} enable always trigger log_rows, enable always trigger log_statements`);
        }
      }
    }
    const dest = (side: string) => (t: string) => `public.gm_${t.slice("public.".length)}_${side}`;
    let groupedStatements = 0;
    let rowwiseStatements = 0;
    for (let seed = 100; seed < 110; seed++) {
      // three workloads merged in random order
      const parts = kinds.map((k, n) => randomWorkload(seed * 3 + n, 250, `public.${k}`));
      const rnd = prng(seed);
      const changes: RowChange[] = [];
      while (parts.some((x) => x.length > 0)) {
        const from = parts.filter((x) => x.length > 0);
        const part = from[Math.floor(rnd() * from.length)]!;
        changes.push(...part.splice(0, 1 + Math.floor(rnd() * 3)));
      }
      await db.query(
        kinds.flatMap((k) => ["g", "r"].map((side) => `truncate gm_${k}_${side}; insert into gm_${k}_${side} ${fill}`)).join("; ") +
          "; truncate gm_log_g, gm_log_r",
      );
      const grouped = await apply(changes, { destTable: dest("g"), onMissingRow: "log" });
      const rowwise = await apply(changes, { destTable: dest("r"), onMissingRow: "log", group: false });
      for (const k of kinds) {
        expect(await rows(`gm_${k}_g`, "a, b")).toEqual(await rows(`gm_${k}_r`, "a, b"));
        const { destTable: _g, ...gStats } = grouped.tables.get(`public.${k}`)!;
        const { destTable: _r, ...rStats } = rowwise.tables.get(`public.${k}`)!;
        expect(gStats).toEqual(rStats);
      }
      expect(grouped.missed.map((m) => [m.table, m.op, m.key])).toEqual(rowwise.missed.map((m) => [m.table, m.op, m.key]));
      expect(grouped.missedTotal).toBe(rowwise.missedTotal);
      // the ALWAYS triggers saw the same row and statement events, in the same order
      const log = async (side: string) => (await db.query<{ what: string }>(`select what from gm_log_${side} order by n`)).rows.map((r) => r.what);
      expect(await log("g")).toEqual(await log("r"));
      groupedStatements += grouped.statements;
      rowwiseStatements += rowwise.statements;
    }
    expect(groupedStatements).toBeLessThan(rowwiseStatements * 0.8);
  });

  it("interleaved inserts, updates and deletes of distinct rows go as one statement per kind", async () => {
    await reset();
    const key = (a: number): Row => ({ a: String(a), b: bOf(a) });
    const row = (a: number, c: string): Row => ({ ...key(a), c, d: null, e: "x", u: null });
    const changes: RowChange[] = [];
    for (let a = 0; a < 60; a++) {
      if (a % 3 === 0) changes.push(del(T, key(a)));
      else if (a % 3 === 1) changes.push(upd(T, key(a), row(a, "1.5")));
      changes.push(ins(T, row(1000 + a, "2.5")));
    }
    const { grouped } = await compare(changes);
    expect(grouped.statements).toBe(3);
    // a row that is not there: the same report as per-row apply (checked by compare)
    changes.splice(50, 0, upd(T, key(5000), row(5000, "9")));
    const again = await compare(changes);
    expect(again.grouped.missedTotal).toBe(1);
  });

  it("a row changed several times: layers in order; inserts keep their order where a default may fill a column", async () => {
    for (const [table, extra] of [
      ["gl_serial", ", n serial"],
      ["gl_plain", ""],
    ]) {
      await db.query(`create table ${table}_g (a int, b text, v text${extra}, primary key (a, b));
        create table ${table}_r (a int, b text, v text${extra}, primary key (a, b));
        insert into ${table}_g (a, b, v) select g, 'x', 'init' from generate_series(0, 29) g;
        insert into ${table}_r (a, b, v) select g, 'x', 'init' from generate_series(0, 29) g`);
    }
    const t = "public.gl";
    const k = (a: number): Row => ({ a: String(a), b: "x" });
    const changes: RowChange[] = [];
    for (let a = 0; a < 30; a++) {
      changes.push(upd(t, k(a), { ...k(a), v: `u1-${a}` }), ins(t, { ...k(100 + a), v: `i-${a}` }));
      if (a % 3 === 0) changes.push(del(t, k(a)), ins(t, { ...k(a), v: `again-${a}` }));
      if (a % 3 === 1) changes.push(upd(t, k(100 + a), { ...k(100 + a), v: `u2-${a}` }), del(t, k(100 + a)));
      changes.push(upd(t, k(a), { ...k(a), v: `u3-${a}` }));
    }
    const statements: Record<string, number> = {};
    for (const table of ["gl_serial", "gl_plain"]) {
      const grouped = await apply(changes, { destTable: () => `public.${table}_g` });
      const rowwise = await apply(changes, { destTable: () => `public.${table}_r`, group: false });
      expect(await rows(`${table}_g`, "a, b")).toEqual(await rows(`${table}_r`, "a, b")); // serial numbers included
      expect(grouped.tables.get(t)).toEqual({ ...rowwise.tables.get(t), destTable: `public.${table}_g` });
      statements[table] = grouped.statements;
    }
    // each row changed up to 4 times: 4 layers of at most 3 statements
    expect(statements.gl_plain).toBeLessThanOrEqual(12);
    expect(statements.gl_serial).toBeLessThan(changes.length);
  });

  it("'error' mode: a missing row inside an update run throws what per-row apply throws, and nothing stays", async () => {
    await reset();
    const run = [1, 2, 3, 4, 5000, 6, 7].map((a) => upd(T, { a: String(a), b: bOf(a) }, { a: String(a), b: bOf(a), c: "777", d: null, e: null, u: null }));
    const grouped = await apply(run, { destTable: () => "public.gu_grouped" }).catch((e: unknown) => e);
    const rowwise = await apply(run, { destTable: () => "public.gu_rowwise", group: false }).catch((e: unknown) => e);
    expect(grouped).toBeInstanceOf(ApplyError);
    expect((grouped as ApplyError).message).toBe('public.gu_grouped: update found no row with key {"a":"5000","b":"NULL"}');
    expect((rowwise as ApplyError).message).toBe((grouped as ApplyError).message.replace("gu_grouped", "gu_rowwise"));
    expect(await rows("gu_grouped", "a, b")).toEqual(await rows("gu_rowwise", "a, b"));
    expect(await num(db.pool, "select count(*) from gu_grouped where c = 777")).toBe(0);
  });

  it("a data error inside a run is raised as per-row apply raises it (at the same change)", async () => {
    await reset();
    const run = [1, 2, 3, 4, 5, 6].map((a) =>
      upd(T, { a: String(a), b: bOf(a) }, { a: String(a), b: bOf(a), c: a === 4 ? "666" : "1", d: null, e: null, u: null }),
    );
    const onTable = (table: string, group: boolean) =>
      apply(run, { group, destTable: () => `public.${table}` }).then(
        () => "no error",
        (e: Error) => `${(e as { code?: string }).code}: ${e.message}`,
      );
    const grouped = await onTable("gu_grouped", true);
    const rowwise = await onTable("gu_rowwise", false);
    expect(grouped).toBe('23514: new row for relation "gu_grouped" violates check constraint "gu_grouped_c_check"');
    expect(grouped.replace(/gu_grouped/g, "gu_rowwise")).toBe(rowwise);
  });

  it("a key given twice in different spellings falls back to per-row apply", async () => {
    await db.query("create table gu_num_g (k numeric primary key, v text); create table gu_num_r (k numeric primary key, v text)");
    await db.query("insert into gu_num_g values (1, 'a'), (2, 'b'), (3, 'c'); insert into gu_num_r select * from gu_num_g");
    const run = [
      upd("public.n", { k: "1" }, { k: "1", v: "x" }),
      upd("public.n", { k: "2" }, { k: "2", v: "y" }),
      upd("public.n", { k: "1.0" }, { k: "1.0", v: "z" }), // the same row as "1": must win, as in per-row order
      upd("public.n", { k: "3" }, { k: "3", v: "w" }),
    ];
    const grouped = await apply(run, { destTable: () => "public.gu_num_g" });
    await apply(run, { destTable: () => "public.gu_num_r", group: false });
    expect(await rows("gu_num_g")).toEqual(["(1.0,z)", "(2,y)", "(3,w)"]);
    expect(await rows("gu_num_r")).toEqual(await rows("gu_num_g"));
    expect(grouped.tables.get("public.n")!.updates).toBe(4);
  });

  it("a swap of a secondary unique column, valid in per-row order, succeeds", async () => {
    await db.query(`create table gu_uniq (id int primary key, email text unique);
      insert into gu_uniq select g, 'e' || g from generate_series(1, 10) g`);
    // each update frees the value that the next one takes: fine one by one, not necessarily all at once
    const run = [
      upd("public.gu_uniq", { id: "1" }, { id: "1", email: "tmp" }),
      ...Array.from({ length: 9 }, (_, i) => upd("public.gu_uniq", { id: String(i + 2) }, { id: String(i + 2), email: `e${i + 1}` })),
    ];
    await apply(run);
    expect(await rows("gu_uniq", "id")).toEqual(["(1,tmp)", ...Array.from({ length: 9 }, (_, i) => `(${i + 2},e${i + 1})`)]);
  });

  it("a table whose primary key is not the change's key goes row by row: several rows hit is still an error", async () => {
    await db.query("create table gu_nokey (id int, v text); insert into gu_nokey values (1, 'a'), (1, 'b'), (2, 'c'), (3, 'd')");
    const run = ["2", "3", "1", "4"].map((id) => upd("public.gu_nokey", { id }, { id, v: "x" }));
    await expect(apply(run, { onMissingRow: "log" })).rejects.toThrow(/hit 2 rows/);
    const dels = ["2", "3", "1"].map((id) => del("public.gu_nokey", { id }));
    await expect(apply([...dels, del("public.gu_nokey", { id: "9" })], { onMissingRow: "log" })).rejects.toThrow(/hit 2 rows/);
    expect(await num(db.pool, "select count(*) from gu_nokey")).toBe(4);
  });

  it("a partitioned subscriber table is reached through its partitions", async () => {
    await db.query(`create table gu_part (id int primary key, v text) partition by range (id);
      create table gu_part_1 partition of gu_part for values from (0) to (100);
      create table gu_part_2 partition of gu_part for values from (100) to (200);
      insert into gu_part select g, 'v' from generate_series(1, 150) g`);
    const updates = [5, 6, 7, 120, 121].map((id) => upd("public.gu_part", { id: String(id) }, { id: String(id), v: "new" }));
    const report = await apply([...updates, upd("public.gu_part", { id: "8" }, { id: "8", v: "one" }), del("public.gu_part", { id: "9" })]);
    expect(report.tables.get("public.gu_part")).toMatchObject({ updates: 6, deletes: 1, missedUpdates: 0 });
    expect(await num(db.pool, "select count(*) from gu_part where v = 'new'")).toBe(5);
    await apply([trunc("public.gu_part")]);
    expect(await num(db.pool, "select count(*) from gu_part")).toBe(0);
  });
});

describe("capture pins only the settings its column types print under", () => {
  // Provider tables and their subscriber copies (`<name>_copy`) in this one database.
  const TABLES: Record<string, { columns: string; pins: string[] | null; rows: string }> = {
    pin_none: {
      columns: "id int primary key, n numeric, t text, b bool, u uuid, j jsonb, e pin_mood, ai int[], r int4range, ip inet, vb varbit, c pin_plain",
      pins: null,
      rows: `(1, 1.50, 'x "y", \\z', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": 1.0}', 'ok', '{1,NULL}', '[1,5)', '10.0.0.1/8', B'101', '(1,"a,b")'),
             (2, 'NaN', '', null, null, 'null', null, '{}', 'empty', '::1', B'', '(,)')`,
    },
    pin_float: {
      columns: "id int primary key, f8 float8, f4 float4, pt point, fa float8[]",
      pins: ["extra_float_digits=3"],
      rows: `(1, 0.1, 0.1, '(0.1,1e-300)', '{0.30000000000000004,-0}'), (2, '-0', 'NaN', null, '{Infinity}')`,
    },
    pin_time: {
      columns: "id int primary key, c pin_span, d pin_stamps, tr tstzrange",
      pins: ["DateStyle=ISO, YMD", "IntervalStyle=postgres", "TimeZone=UTC"],
      rows: `(1, '(1,"1 year -2 days 03:04:05.5")', '{2024-02-29 23:59:59.123456+14,NULL}', '[2020-01-01 00:00+00,2021-06-01 12:00+05)'),
             (2, null, '{infinity}', 'empty')`,
    },
    pin_bytes: {
      columns: "id int primary key, by bytea, m money",
      pins: ["bytea_output=hex", "lc_monetary=C"],
      rows: `(1, '\\x00ff5c'::bytea, '12.34'), (2, ''::bytea, '-0.01')`,
    },
  };
  const Q = "pin_q";

  beforeAll(async () => {
    await installPgq(db.pool);
    await runSqlScript(db.pool, fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url)));
    await db.query(`select pgq.create_queue('${Q}')`);
    await registerConsumer(db.pool, Q, "pin_replay");
    await db.query(`
      create type pin_mood as enum ('sad', 'ok');
      create type pin_plain as (a int, b text);
      create type pin_span as (a int, iv interval);
      create domain pin_stamps as timestamptz[]`);
    for (const [name, { columns }] of Object.entries(TABLES)) {
      await db.query(`create table ${name} (${columns}); create table ${name}_copy (${columns})`);
      await db.query("select londiste.create_capture($1, $2::regclass)", [Q, name]);
    }
  });

  it("generates SET clauses per type, and what it captures under hostile writer settings replays byte-exact", async () => {
    const { rows: funcs } = await db.query<{ relname: string; proconfig: string[] | null }>(
      `select c.relname, p.proconfig from pg_proc p
         join pg_class c on p.proname = 'capture_' || c.oid || '_' || (select queue_id from pgq.queue where queue_name = $1)
        where p.pronamespace = 'londiste'::regnamespace`,
      [Q],
    );
    expect(Object.fromEntries(funcs.map((f) => [f.relname, f.proconfig]))).toEqual(
      Object.fromEntries(Object.entries(TABLES).map(([name, { pins }]) => [name, pins])),
    );

    const writer = await db.pool.connect();
    try {
      await writer.query(
        "set datestyle = 'SQL, DMY'; set timezone = 'Asia/Kathmandu'; set extra_float_digits = -15; " +
          "set bytea_output = 'escape'; set intervalstyle = 'sql_standard'",
      );
      await writer.query("begin");
      for (const [name, { rows: values }] of Object.entries(TABLES)) {
        await writer.query(`insert into ${name} values ${values}`);
        await writer.query(`update ${name} set id = id + 10 where id = 2`);
      }
      await writer.query("commit");
    } finally {
      writer.release(true);
    }
    await tickNow(db.pool, Q);
    const batch = (await nextBatch(db.pool, Q, "pin_replay"))!;
    const changes = (await getBatchEvents(db.pool, batch.batchId)).map(decodeChange);
    expect(changes).toHaveLength(Object.keys(TABLES).length * 3);
    await apply(changes, { destTable: (t) => `${t}_copy` });
    await finishBatch(db.pool, batch.batchId);

    const canonical = await db.pool.connect();
    try {
      await canonical.query(
        "set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; set timezone = 'UTC'; set extra_float_digits = 3; set bytea_output = 'hex'",
      );
      for (const name of Object.keys(TABLES)) {
        const dump = async (t: string) => (await canonical.query<{ r: string }>(`select x::text as r from ${t} x order by id`)).rows.map((r) => r.r);
        const prov = await dump(name);
        expect(prov.map((r) => r.split(",")[0])).toEqual(["(1", "(12"]);
        expect(await dump(`${name}_copy`)).toEqual(prov);
      }
    } finally {
      canonical.release();
    }
  });
});

describe("the applier session and transaction", () => {
  it("the applier session's settings do not matter, and SET LOCAL leaves them as they were", async () => {
    await db.query(`
      create type hue as enum ('red', 'green');
      create table settings_t (id int primary key, ts timestamptz, d date, iv interval, f float8, m money, h hue, arr date[])`);
    const client: pg.PoolClient = await db.pool.connect();
    try {
      await client.query(
        "set datestyle = 'SQL, DMY'; set timezone = 'Pacific/Chatham'; set intervalstyle = 'sql_standard'; " +
          "set extra_float_digits = -15; set lc_monetary = 'C'; set search_path = pg_catalog; set array_nulls = off",
      );
      await client.query("begin");
      await applyChanges(
        client,
        [
          ins("public.settings_t", {
            id: "1",
            ts: "2024-03-04 05:06:07.123456+00",
            d: "2024-03-04",
            iv: "1 year 2 mons -3 days 04:05:06.5",
            f: "0.30000000000000004",
            m: "$1,234.56",
            h: "green",
            arr: "{2024-03-04,NULL}",
          }),
          upd("public.settings_t", { id: "1" }, { id: "1", ts: "2001-02-03 04:05:06+00", d: "0001-01-01 BC", iv: "-00:00:01", f: "-0", m: "-0.01", h: "red", arr: "{}" }),
          ins("public.settings_t", { id: "2", ts: "2024-12-31 23:59:59+00", d: "2024-12-31", iv: "0", f: "1e-300", m: "0", h: "red", arr: null }),
          // a grouped run: values travel as text[] parameters, NULL elements included
          ins("public.settings_t", { id: "3", ts: null, d: null, iv: null, f: null, m: null, h: null, arr: "{NULL}" }),
          ins("public.settings_t", { id: "4", ts: null, d: "2024-01-02", iv: null, f: "NaN", m: null, h: "green", arr: null }),
        ],
        { onMissingRow: "error" },
      );
      await client.query("commit");
      // the session's own settings are back
      expect((await client.query("show datestyle")).rows[0].DateStyle).toBe("SQL, DMY");
      expect((await client.query("show timezone")).rows[0].TimeZone).toBe("Pacific/Chatham");
      expect((await client.query("show session_replication_role")).rows[0].session_replication_role).toBe("origin");
    } finally {
      client.release(true); // its hostile settings must not go back to the pool
    }
    const reader = await db.pool.connect();
    let r: Array<{ r: string }>;
    try {
      await reader.query("set datestyle = 'ISO, YMD'; set timezone = 'UTC'; set intervalstyle = 'postgres'; set extra_float_digits = 3");
      r = (await reader.query<{ r: string }>("select x::text as r from settings_t x order by id")).rows;
    } finally {
      reader.release();
    }
    expect(r.map((x) => x.r)).toEqual([
      '(1,"2001-02-03 04:05:06+00","0001-01-01 BC",-00:00:01,-0,-$0.01,red,{})',
      '(2,"2024-12-31 23:59:59+00",2024-12-31,00:00:00,1e-300,$0.00,red,)',
      "(3,,,,,,,{NULL})",
      "(4,,2024-01-02,,NaN,,green,)",
    ]);
  });

  it("refuses to run outside a transaction, where SET LOCAL would do nothing", async () => {
    const client = await db.pool.connect();
    try {
      await expect(applyChanges(client, [ins("public.keep_me", { id: "1" })], { onMissingRow: "error" })).rejects.toThrow(
        /transaction block/,
      );
      expect(await num(client, "select count(*) from keep_me")).toBe(0);
    } finally {
      client.release();
    }
  });

  it("joins the caller's transaction: a rollback by the caller undoes the apply", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      const report = await applyChanges(client, [ins("public.keep_me", { id: "1" })], { onMissingRow: "error" });
      expect(report.tables.get("public.keep_me")!.inserts).toBe(1);
      expect(await num(client, "select count(*) from keep_me")).toBe(1);
      await client.query("rollback");
      expect(await num(client, "select count(*) from keep_me")).toBe(0);
    } finally {
      client.release();
    }
  });
});

describe("identity ALWAYS columns on the subscriber", () => {
  it("updates leave them alone (they cannot be assigned) and apply the other columns; a changed identity value counts as missed", async () => {
    const db = await createTestDatabase("apply_identity");
    try {
      await db.query("create table ida (id int primary key, serial_no int generated always as identity, v text)");
      await db.query("insert into ida (id, v) values (1, 'a'), (2, 'b')");
      const { rows } = await db.query<{ id: number; serial_no: number }>("select id, serial_no from ida order by id");
      const client = await db.pool.connect();
      try {
        await client.query("begin");
        const changes: RowChange[] = [1, 2].map((id) => ({
          op: "update",
          table: "public.ida",
          row: new Map([["id", String(id)], ["serial_no", String(rows[id - 1]!.serial_no)], ["v", `new ${id}`]]),
          key: new Map([["id", String(id)]]),
        }));
        const report = await applyChanges(client, changes, { onMissingRow: "log" });
        expect(report.missedTotal).toBe(0);
        const changed: RowChange = {
          op: "update",
          table: "public.ida",
          row: new Map([["id", "1"], ["serial_no", "999"], ["v", "lost?"]]),
          key: new Map([["id", "1"]]),
        };
        const second = await applyChanges(client, [changed], { onMissingRow: "log" });
        expect(second.missedTotal).toBe(1);
        await client.query("commit");
      } finally {
        client.release();
      }
      expect((await db.query("select id, v from ida order by id")).rows).toEqual([
        { id: 1, v: "new 1" },
        { id: 2, v: "new 2" },
      ]);
    } finally {
      await db.drop();
    }
  });
});
