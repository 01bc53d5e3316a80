/**
 * Londiste subscriber registrations and position (docs/londiste.md, "The
 * SQL API"): table states and snapshots, skip_truncate,
 * sequences, the last applied tick, and canonical names. The subscriber
 * schema installs without PgQ.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const Q = "pqueue";
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("lond_subscriber");
  await runSqlScript(db.pool, LONDISTE_SQL); // no PgQ on a subscriber
});

afterAll(async () => {
  await db?.drop();
});

const tables = async () => (await db.query("select * from londiste.subscriber_get_table_list($1)", [Q])).rows;

describe("subscriber tables", () => {
  it("adds tables (even ones that do not exist) with state NULL, in add order, by canonical name", async () => {
    expect((await db.query("select londiste.subscriber_add_table($1, 'data1') as r", [Q])).rows[0].r).toBe(0);
    expect((await db.query(`select londiste.subscriber_add_table($1, '"Other"."Odd Name"') as r`, [Q])).rows[0].r).toBe(0);
    expect((await db.query("select londiste.subscriber_add_table($1, 'public.nonexistent') as r", [Q])).rows[0].r).toBe(0);
    expect(await tables()).toEqual([
      { table_name: "public.data1", merge_state: null, snapshot: null, trigger_name: null, skip_truncate: null },
      { table_name: '"Other"."Odd Name"', merge_state: null, snapshot: null, trigger_name: null, skip_truncate: null },
      { table_name: "public.nonexistent", merge_state: null, snapshot: null, trigger_name: null, skip_truncate: null },
    ]);
    await expect(db.query("select londiste.subscriber_add_table($1, 'public.data1')", [Q])).rejects.toMatchObject({ code: "23505" });
  });

  it("in-copy keeps skip_truncate, ok clears it; the snapshot always takes the value passed", async () => {
    await db.query("select londiste.subscriber_set_skip_truncate($1, 'data1', true)", [Q]);
    await db.query("select londiste.subscriber_set_table_state($1, 'data1', '10:20:15', 'in-copy')", [Q]);
    expect((await tables())[0]).toMatchObject({ merge_state: "in-copy", snapshot: "10:20:15", skip_truncate: true });
    await db.query("select londiste.subscriber_set_table_state($1, 'data1', null, 'ok')", [Q]);
    expect((await tables())[0]).toMatchObject({ merge_state: "ok", snapshot: null, skip_truncate: null });
    await expect(db.query("select londiste.subscriber_set_table_state($1, 'nope', null, 'ok')", [Q])).rejects.toMatchObject({ message: "no such table", detail: "table nope" });
    await expect(db.query("select londiste.subscriber_set_skip_truncate($1, 'nope', true)", [Q])).rejects.toMatchObject({ message: "no such table", detail: "table nope" });
  });

  it("removes a table once", async () => {
    expect((await db.query("select londiste.subscriber_remove_table($1, 'nonexistent') as r", [Q])).rows[0].r).toBe(0);
    await expect(db.query("select londiste.subscriber_remove_table($1, 'nonexistent')", [Q])).rejects.toMatchObject({
      message: "no such table",
      detail: "table nonexistent",
    });
    expect((await tables()).map((t) => t.table_name)).toEqual(["public.data1", '"Other"."Odd Name"']);
  });

  it("rejects text that is not a table name", async () => {
    await expect(db.query("select londiste.subscriber_add_table($1, 'a.b.c')", [Q])).rejects.toThrow("bad name: a.b.c");
    await expect(db.query(`select londiste.subscriber_add_table($1, '"unterminated')`, [Q])).rejects.toThrow('bad name: "unterminated');
  });
});

describe("subscriber sequences", () => {
  it("accepts a sequence that does not exist; removing twice fails with 'no such seq?'", async () => {
    expect((await db.query("select londiste.subscriber_add_seq($1, 'no_such_seq') as r", [Q])).rows[0].r).toBe(0);
    expect((await db.query("select s from londiste.subscriber_get_seq_list($1) s", [Q])).rows).toEqual([{ s: "public.no_such_seq" }]);
    expect((await db.query("select londiste.subscriber_remove_seq($1, 'no_such_seq') as r", [Q])).rows[0].r).toBe(0);
    await expect(db.query("select londiste.subscriber_remove_seq($1, 'no_such_seq')", [Q])).rejects.toThrow("no such seq?");
  });
});

describe("last applied tick", () => {
  it("set_last_tick 1, 2, NULL reads back as 1, 2, NULL, per consumer", async () => {
    const last = async (c: string) => (await db.query("select londiste.get_last_tick($1) as t", [c])).rows[0].t;
    expect(await last("job")).toBeNull();
    await db.query("select londiste.set_last_tick('job', 1)");
    expect(await last("job")).toBe("1");
    await db.query("select londiste.set_last_tick('job', 2)");
    await db.query("select londiste.set_last_tick('job_copy', 7)");
    expect(await last("job")).toBe("2");
    await db.query("select londiste.set_last_tick('job', null)");
    expect(await last("job")).toBeNull();
    expect(await last("job_copy")).toBe("7");
  });
});

describe("names", () => {
  it("canonical names agree with the catalog's form of the same table", async () => {
    await db.query(`create schema "Other"; create table "Other"."Odd Name" (id int primary key); create table "select" (id int primary key)`);
    const { rows } = await db.query(
      `select londiste.canonical_name('"Other"."Odd Name"') = londiste.quote_table('"Other"."Odd Name"'::regclass) as a,
              londiste.canonical_name('"select"') = londiste.quote_table('"select"'::regclass) as b,
              londiste.canonical_name('"select"') as c`,
    );
    expect(rows[0]).toEqual({ a: true, b: true, c: 'public."select"' });
  });
});
