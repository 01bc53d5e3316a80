/**
 * Londiste provider registrations (docs/londiste.md, "The SQL API"):
 * tables and sequences are added, listed and removed with the
 * original errors, a table's capture lives exactly as long as its
 * registration, and names follow SQL's rules ("no schema" means public,
 * unquoted parts fold to lower case, quoted parts are kept as they are).
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { getBatchEvents, installPgq, nextBatch, registerConsumer, tickNow, finishBatch } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { LONDISTE_SCHEMA_VERSION } from "../../shared/londiste/install.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const Q = "pqueue";
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("lond_provider");
  await installPgq(db.pool);
  await runSqlScript(db.pool, LONDISTE_SQL);
  await db.query("select pgq.create_queue($1)", [Q]);
  await registerConsumer(db.pool, Q, "sub");
  await db.query(`
    create table data1 (id serial primary key, data text);
    create table nopk (id int, data text);
    create schema "Other";
    create table "Other"."Odd Name" ("Key" int primary key, v text);
    create sequence seq1;
  `);
});

afterAll(async () => {
  await db?.drop();
});

async function triggersOn(table: string): Promise<string[]> {
  const { rows } = await db.query<{ tgname: string }>(
    "select tgname from pg_trigger where tgrelid = $1::regclass and not tgisinternal order by tgname",
    [table],
  );
  return rows.map((r) => r.tgname);
}

describe("provider tables", () => {
  it("adds a table: capture trigger live at once, listed in add order", async () => {
    expect((await db.query("select londiste.provider_add_table($1, 'data1') as r", [Q])).rows[0].r).toBe(1);
    expect((await db.query(`select londiste.provider_add_table($1, '"Other"."Odd Name"') as r`, [Q])).rows[0].r).toBe(1);
    expect((await db.query("select * from londiste.provider_get_table_list($1)", [Q])).rows).toEqual([
      { table_name: "public.data1", trigger_name: "londiste_capture_1" },
      { table_name: '"Other"."Odd Name"', trigger_name: "londiste_capture_1" },
    ]);
    expect(await triggersOn("data1")).toEqual(["londiste_capture_1", "londiste_capture_1_truncate"]);

    await db.query("insert into data1 (data) values ('x')");
    await db.query(`insert into "Other"."Odd Name" values (1, 'y')`);
    await tickNow(db.pool, Q);
    const batch = (await nextBatch(db.pool, Q, "sub"))!;
    const events = await getBatchEvents(db.pool, batch.batchId);
    expect(events.map((e) => [e.type, e.extra1, e.data])).toEqual([
      ["I", "public.data1", "(1,x)"],
      ["I", '"Other"."Odd Name"', "(1,y)"],
    ]);
    await finishBatch(db.pool, batch.batchId);
  });

  it("refuses a table without a primary key, an unknown queue or table, and a second add", async () => {
    // the Skytools 2 texts exactly; the name is in the DETAIL
    await expect(db.query("select londiste.provider_add_table($1, 'nopk')", [Q])).rejects.toMatchObject({
      message: "need key column",
      detail: "public.nopk has no primary key",
    });
    await expect(db.query("select londiste.provider_add_table('nope', 'data1')")).rejects.toMatchObject({ message: "no such event queue", detail: "queue nope" });
    await expect(db.query("select londiste.provider_add_table($1, 'missing')", [Q])).rejects.toThrow("no such table: missing");
    await expect(db.query("select londiste.provider_add_table($1, 'public.data1')", [Q])).rejects.toMatchObject({ code: "23505" });
    await expect(db.query(`select londiste.provider_add_table($1, 'a.b.c.d')`, [Q])).rejects.toThrow("bad name: a.b.c.d");
    expect(await triggersOn("nopk")).toEqual([]);
  });

  it("refresh re-creates the capture; remove drops it and forgets the table; removing twice fails", async () => {
    await db.query("alter table data1 add column extra text");
    await db.query("select londiste.provider_refresh_trigger($1, 'data1')", [Q]);
    await db.query("insert into data1 (data, extra) values ('a', 'b')");
    const { rows } = await db.query(
      "select ev_extra2 from pgq.event_template where ev_extra1 = 'public.data1' order by ev_id desc limit 1",
    );
    expect(rows[0].ev_extra2).toBe("{id,data,extra}");

    expect((await db.query("select londiste.provider_remove_table($1, 'data1') as r", [Q])).rows[0].r).toBe(1);
    expect(await triggersOn("data1")).toEqual([]);
    const funcs = await db.query("select proname from pg_proc where pronamespace = 'londiste'::regnamespace and proname like 'capture_%'");
    expect(funcs.rows).toHaveLength(1); // only the one of "Other"."Odd Name"
    await expect(db.query("select londiste.provider_remove_table($1, 'data1')", [Q])).rejects.toMatchObject({ message: "no such table registered", detail: "table data1" });
    await expect(db.query("select londiste.provider_refresh_trigger($1, 'data1')", [Q])).rejects.toMatchObject({ message: "no such table registered" });
    expect((await db.query("select table_name from londiste.provider_get_table_list($1)", [Q])).rows).toEqual([
      { table_name: '"Other"."Odd Name"' },
    ]);
  });
});

describe("the Skytools 2 column-type string", () => {
  it("find_column_types gives k for key columns and v for the others; add and refresh take the string when it is the table's own", async () => {
    await db.query("create table typed (a int, gone text, b text, c int, primary key (c, a)); alter table typed drop column gone");
    expect((await db.query("select londiste.find_column_types('typed') as t")).rows[0].t).toBe("kvk");
    await expect(db.query("select londiste.provider_add_table($1, 'typed', 'kiv')", [Q])).rejects.toThrow(
      "column types kiv not supported: the capture logs the primary key as k and every other column as v (kvk)",
    );
    expect(await triggersOn("typed")).toEqual([]);
    expect((await db.query("select londiste.provider_add_table($1, 'typed', 'kvk') as r", [Q])).rows[0].r).toBe(1);
    expect((await db.query("select londiste.provider_refresh_trigger($1, 'typed', 'kvk') as r", [Q])).rows[0].r).toBe(1);
    await expect(db.query("select londiste.provider_refresh_trigger($1, 'typed', 'vvk')", [Q])).rejects.toThrow(/^column types vvk not supported/);
    await expect(db.query("select londiste.provider_add_table($1, 'missing', 'kv')", [Q])).rejects.toThrow("no such table: missing");
    await expect(db.query("select londiste.find_column_types('missing')")).rejects.toThrow("no such table: missing");
    expect((await db.query("select londiste.provider_remove_table($1, 'typed') as r", [Q])).rows[0].r).toBe(1);
  });
});

describe("provider sequences", () => {
  it("adds, lists and removes sequences with the original errors", async () => {
    await expect(db.query("select londiste.provider_add_seq($1, 'noseq')", [Q])).rejects.toMatchObject({ message: "seq not found", detail: "sequence noseq" });
    await expect(db.query("select londiste.provider_add_seq('nope', 'noseq')")).rejects.toMatchObject({ message: "no such event queue" });
    expect((await db.query("select londiste.provider_add_seq($1, 'seq1') as r", [Q])).rows[0].r).toBe(1);
    await expect(db.query("select londiste.provider_add_seq($1, 'public.seq1')", [Q])).rejects.toMatchObject({ code: "23505" });
    expect((await db.query("select s from londiste.provider_get_seq_list($1) s", [Q])).rows).toEqual([{ s: "public.seq1" }]);
    expect((await db.query("select londiste.provider_remove_seq($1, 'seq1') as r", [Q])).rows[0].r).toBe(1);
    await expect(db.query("select londiste.provider_remove_seq($1, 'seq1')", [Q])).rejects.toMatchObject({ message: "seq not attached", detail: "sequence seq1" });
  });
});

describe("install", () => {
  it("running sql/londiste/install.sql again changes nothing", async () => {
    const before = await db.query("select version, name from londiste.schema_migration order by version");
    await runSqlScript(db.pool, LONDISTE_SQL);
    expect((await db.query("select version, name from londiste.schema_migration order by version")).rows).toEqual(before.rows);
    expect(before.rows.map((r) => r.version)).toEqual(Array.from({ length: LONDISTE_SCHEMA_VERSION }, (_, i) => i + 1));
  });
});
