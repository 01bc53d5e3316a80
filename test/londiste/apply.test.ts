/**
 * applyChanges (shared/londiste/apply.ts): replay's apply step on a
 * subscriber database. Missing rows in both modes, missing tables and
 * columns, table redirection, user triggers silenced, grouped and per-row
 * apply giving the same table, the applier session's settings not
 * mattering, and the transaction contract. (The byte-exact torture replay
 * of every value kind is in encoding.test.ts, which also uses applyChanges.)
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTransaction } from "../../shared/db/transaction.ts";
import { applyChanges, ApplyError, MAX_MISSED_LISTED, type ApplyOptions, type ApplyReport } from "../../shared/londiste/apply.ts";
import type { RowChange } from "../../shared/londiste/change-event.ts";
import { readTableShape } from "../../shared/londiste/table-shape.ts";
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

describe("the applier session and transaction", () => {
  it("the applier session's settings do not matter, and SET LOCAL leaves them as they were", async () => {
    await db.query(`
      create type hue as enum ('red', 'green');
      create table settings_t (id int primary key, ts timestamptz, d date, iv interval, f float8, m money, h hue, arr date[])`);
    const client: pg.PoolClient = await db.pool.connect();
    try {
      await client.query(
        "set datestyle = 'SQL, DMY'; set timezone = 'Pacific/Chatham'; set intervalstyle = 'sql_standard'; " +
          "set extra_float_digits = -15; set lc_monetary = 'C'; set search_path = pg_catalog",
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
