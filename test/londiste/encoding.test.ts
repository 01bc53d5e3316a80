/**
 * The Londiste change encoding replays byte-exact: a provider table with
 * every kind of built-in value, written by a session with hostile settings
 * (DateStyle, TimeZone, extra_float_digits, bytea_output, IntervalStyle),
 * is captured by londiste.create_capture, decoded with decodeChange and
 * applied with applyChanges (shared/londiste/apply.ts) to a subscriber table
 * by a session with other hostile settings;
 * both tables then print identically, row by row. Also: odd identifiers,
 * primary key changes, a row inserted, updated and deleted in one batch,
 * generated and dropped columns, TRUNCATE, and a column added after the
 * capture was created is reported instead of lost.
 */
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { applyChanges, type ApplyReport } from "../../shared/londiste/apply.ts";
import { decodeChange, type RowChange } from "../../shared/londiste/change-event.ts";
import { parseRecord, parseTextArray } from "../../shared/londiste/record-text.ts";
import { getBatchEvents, finishBatch, installPgq, nextBatch, registerConsumer, tickNow } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const Q = "torture_q";
const TABLE = `"Mixed ""Case"" Table"`;

const TYPES = `
create type mood as enum ('sad', 'ok', 'happy "quoted"');
create type pair as (a int, b text);
`;
// The subscriber gets the same columns without the dropped one; `gen` is recomputed there.
const COLUMNS = `
  "Id" int8,
  "select" text,
  i2 int2, i4 int4, n numeric, n_fixed numeric(10,3), f4 float4, f8 float8, b bool,
  t text, vc varchar(20), ch char(5), by bytea, j json, jb jsonb,
  d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, ip inet, cidr_v cidr, mac macaddr, ai int4[], at text[], comp pair, m mood,
  bits bit(4), vbits varbit, pt point, r int4range, tr tstzrange, mny money,
  "ünï código" text,
  gen int8 generated always as ("Id" * 2) stored,
  primary key ("Id", "select")`;

let provider: TestDatabase;
let subscriber: TestDatabase;
let writer: pg.PoolClient;
let applier: pg.PoolClient;

beforeAll(async () => {
  provider = await createTestDatabase("lond_enc_prov");
  subscriber = await createTestDatabase("lond_enc_sub");
  await installPgq(provider.pool);
  await runSqlScript(provider.pool, LONDISTE_SQL);
  await runSqlScript(provider.pool, LONDISTE_SQL); // idempotent
  await provider.query("select pgq.create_queue($1)", [Q]);
  await registerConsumer(provider.pool, Q, "replay");
  await provider.query(`${TYPES} create table ${TABLE} (gone_before int, ${COLUMNS}); alter table ${TABLE} drop column gone_before;`);
  await subscriber.query(`${TYPES} create table ${TABLE} (${COLUMNS});`);
  await provider.query("select londiste.create_capture($1, $2::regclass)", [Q, TABLE]);

  writer = await provider.pool.connect();
  await writer.query(
    "set datestyle = 'SQL, DMY'; set timezone = 'Asia/Kathmandu'; set extra_float_digits = -15; " +
      "set bytea_output = 'escape'; set intervalstyle = 'sql_standard'",
  );
  applier = await subscriber.pool.connect();
  await applier.query(
    "set datestyle = 'German'; set timezone = 'Pacific/Chatham'; set extra_float_digits = 0; " +
      "set bytea_output = 'escape'; set intervalstyle = 'iso_8601'",
  );
});

afterAll(async () => {
  writer?.release();
  applier?.release();
  await provider?.drop();
  await subscriber?.drop();
});

const ROWS = `
insert into ${TABLE} ("Id", "select", i2, i4, n, n_fixed, f4, f8, b, t, vc, ch, by, j, jb, d, tm, tmtz, ts, tstz, iv,
                      u, ip, cidr_v, mac, ai, at, comp, m, bits, vbits, pt, r, tr, mny, "ünï código") values
 (1, 'plain', 1, 2, 1.50, 3.100, 0.1, 0.1, true, 'hello', 'v', 'ab', '\\x00ff'::bytea, '{"a": [1, 2.50]}', '{"b": null}',
  '2024-02-29', '23:59:59.999999', '12:00+05:30', '2000-01-01 00:00:00.000001', '2024-06-30 23:59:59.123456+14',
  '-1 year 2 mons -3 days 04:05:06.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8',
  '08:00:2b:01:02:03', '{1,NULL,3}', '{"a,b","c\\"d",NULL,"NULL",""}', '(1,"x, ""y""")', 'happy "quoted"',
  B'1010', B'1', '(1.5,-2.25)', '[1,10)', '[2020-01-01 00:00+00,2021-01-01 00:00+00)', '12.34', 'ünï ✓ 日本'),
 (2, '', null, -32768, 'NaN', -0.001, '-0', '-0', false, '', '', '', ''::bytea, 'null', '[]',
  'infinity', '00:00', '00:00-12', '-infinity', 'infinity', '0', null, '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '{}', '{}', '(,)', 'sad',
  B'0000', B'', '(0,0)', 'empty', '(,)', '-0.01', E'tab\\there\\nnew line \\\\ back'),
 (3, 'NULLs', null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
 (4, 'floats', 32767, 2147483647, 123456789012345678901234567890.123456789, 1234567.891, 'Infinity', '-Infinity', true,
  'quote '' and "double"', 'x', 'abcde', '\\x5c22', '{"k":"\\u00e9"}', '{"k": "\\u00e9", "n": 1.0}', '0001-01-01 BC',
  '24:00', '24:00+15:59', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '178000000 years', '00000000-0000-0000-0000-000000000000',
  '2001:db8::1/128', '2001:db8::/32', '00:00:00:00:00:00', '{{1,2},{3,4}}', '{"{}","\\\\"}', '(-1,"")', 'ok',
  B'1111', B'101010101', '(1e-300,1e300)', '(,5]', '[,)', '92233720368547758.07', 'x'),
 (5, 'to be deleted', 5, 5, 5, 5, 5, 5, true, 'bye', null, null, null, null, null, null, null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
 (6, 'key changes', 6, 6, 6, 6, 6, 6, true, 'moving', null, null, null, null, null, null, null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null, null, null, null, null, null)`;

let lastReport: ApplyReport | undefined;

async function replicateBatch(): Promise<RowChange[]> {
  await tickNow(provider.pool, Q);
  const batch = await nextBatch(provider.pool, Q, "replay");
  expect(batch).not.toBeNull();
  const changes = (await getBatchEvents(provider.pool, batch!.batchId)).map(decodeChange);
  // one transaction of the hostile applier session, as replay will (a missed update/delete throws)
  await applier.query("begin");
  try {
    lastReport = await applyChanges(applier, changes, { onMissingRow: "error" });
    await applier.query("commit");
  } catch (error) {
    await applier.query("rollback");
    throw error;
  }
  await finishBatch(provider.pool, batch!.batchId);
  return changes;
}

/** Every row as text under the same fixed settings on both sides, by primary key. */
async function dump(db: TestDatabase): Promise<string[]> {
  const client = await db.pool.connect();
  try {
    await client.query(
      "set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; set timezone = 'UTC'; set extra_float_digits = 3; set bytea_output = 'hex'; set lc_monetary = 'C'",
    );
    const { rows } = await client.query<{ r: string }>(`select whole_row::text as r from ${TABLE} whole_row order by "Id", "select"`);
    return rows.map((r) => r.r);
  } finally {
    client.release();
  }
}

describe("composite and array text", () => {
  it("reads NULL, empty strings, quotes, backslashes and commas", () => {
    expect(parseRecord('(1,,"","a ""b""",c\\,d,"x\\\\y")')).toEqual(["1", null, "", 'a "b"', "c,d", "x\\y"]);
    expect(parseRecord("()")).toEqual([null]);
    expect(parseTextArray(String.raw`{Id,"select","Mixed \"\"Case\"\"","a b"}`)).toEqual(["Id", "select", 'Mixed ""Case""', "a b"]);
    expect(() => parseRecord("1,2")).toThrow(/not a composite/);
    expect(() => parseRecord('("open)')).toThrow(/unterminated/);
  });
});

describe("change capture and replay of every built-in kind of value", () => {
  it("inserts replay byte-exact whatever the writer's and applier's settings", async () => {
    await writer.query(ROWS);
    const changes = await replicateBatch();
    expect(changes.map((c) => c.op)).toEqual(["insert", "insert", "insert", "insert", "insert", "insert"]);
    const prov = await dump(provider);
    expect(prov).toHaveLength(6);
    expect(await dump(subscriber)).toEqual(prov);
    // the values that most often go wrong came through as themselves
    const row2 = prov.find((r) => r.startsWith("(2,"))!;
    expect(row2).toContain(",NaN,");
    expect(row2).toContain(",-0,-0,");
    expect(lastReport!.tables.get(`public.${TABLE}`)).toMatchObject({ destTable: `public.${TABLE}`, inserts: 6, updates: 0, deletes: 0 });
    expect(lastReport!.statements).toBe(1); // the six inserts went as one grouped statement, byte-exact too
  });

  it("updates (also of the primary key), deletes and a row inserted, updated and deleted in one batch", async () => {
    await writer.query("begin");
    await writer.query(`update ${TABLE} set f8 = f8 / 3, tstz = tstz + interval '1 microsecond', at = array_append(at, 'z') where "Id" = 1`);
    await writer.query(`update ${TABLE} set "Id" = 60, t = 'moved' where "Id" = 6`);
    await writer.query(`delete from ${TABLE} where "Id" = 5`);
    await writer.query(`insert into ${TABLE} ("Id", "select", t) values (7, 'brief', 'a')`);
    await writer.query(`update ${TABLE} set t = 'b' where "Id" = 7`);
    await writer.query(`delete from ${TABLE} where "Id" = 7`);
    await writer.query(`update ${TABLE} set "select" = 'NULLs, renamed' where "Id" = 3`);
    await writer.query("commit");
    const changes = await replicateBatch();
    expect(changes.map((c) => c.op)).toEqual(["update", "update", "delete", "insert", "update", "delete", "update"]);
    const prov = await dump(provider);
    expect(prov.map((r) => r.split(",")[0])).toEqual(["(1", "(2", "(3", "(4", "(60"]);
    expect(await dump(subscriber)).toEqual(prov);
    // every update and delete hit exactly one row (a miss would have thrown)
    expect(lastReport!.tables.get(`public.${TABLE}`)).toMatchObject({ inserts: 1, updates: 4, deletes: 2, missedUpdates: 0, missedDeletes: 0 });
    expect(lastReport!.missedTotal).toBe(0);
  });

  it("TRUNCATE is captured and replayed", async () => {
    await writer.query(`truncate ${TABLE}`);
    await writer.query(`insert into ${TABLE} ("Id", "select") values (100, 'after truncate')`);
    const changes = await replicateBatch();
    expect(changes.map((c) => c.op)).toEqual(["truncate", "insert"]);
    expect(lastReport!.tables.get(`public.${TABLE}`)).toMatchObject({ truncates: 1, inserts: 1 });
    expect(await dump(subscriber)).toEqual(await dump(provider));
  });

  it("a column added after the capture was created is reported, not silently dropped", async () => {
    await provider.query(`alter table ${TABLE} add column late text default 'new'`);
    await writer.query(`insert into ${TABLE} ("Id", "select", late) values (101, 'late', 'value')`);
    await tickNow(provider.pool, Q);
    const batch = (await nextBatch(provider.pool, Q, "replay"))!;
    const [ev] = await getBatchEvents(provider.pool, batch.batchId);
    expect(() => decodeChange(ev!)).toThrow(/columns changed on the provider since the capture was created/);
    // re-creating the capture picks the column up
    await provider.query("select londiste.create_capture($1, $2::regclass)", [Q, TABLE]);
    await finishBatch(provider.pool, batch.batchId);
    await writer.query(`insert into ${TABLE} ("Id", "select", late) values (102, 'late', 'value')`);
    await tickNow(provider.pool, Q);
    const next = (await nextBatch(provider.pool, Q, "replay"))!;
    const [ev2] = await getBatchEvents(provider.pool, next.batchId);
    const change = decodeChange(ev2!);
    expect(change.op === "insert" && change.row.get("late")).toBe("value");
    await finishBatch(provider.pool, next.batchId);
  });

  it("refuses a table without a primary key and an unknown queue", async () => {
    await provider.query("create table no_pk (a int)");
    await expect(provider.query("select londiste.create_capture($1, 'no_pk')", [Q])).rejects.toMatchObject({
      message: "need key column",
      detail: "public.no_pk has no primary key",
    });
    await expect(provider.query(`select londiste.create_capture('nope', $1::regclass)`, [TABLE])).rejects.toMatchObject({
      message: "no such event queue",
      detail: "queue nope",
    });
  });
});
