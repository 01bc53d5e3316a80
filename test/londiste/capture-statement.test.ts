/**
 * Statement-level capture (londiste.create_capture(queue, table, 'statement'),
 * one event insert per statement over transition tables) writes the same
 * events, in the same order, as the row trigger: two identical tables with
 * odd names and types (quoted identifiers, a two-column key, a dropped and a
 * generated column, NULL and '', NaN, -0, bytea, arrays with NULL, json,
 * enums, timestamptz written under a hostile TimeZone), one captured per
 * row into one queue, the other per statement into another, get the same
 * multi-row statements; the two queues' events must match field by field,
 * and replaying the statement queue's batch must give a subscriber table
 * equal to the provider's. Writable CTEs and INSERT ... ON CONFLICT DO
 * UPDATE give the same events grouped per sub-statement and kind, and the
 * same replay. Also: a statement whose rows wait for another
 * transaction's lock gets its events after that transaction's, the
 * 2-argument create_capture keeps the mode, and the mode is refused where
 * statement triggers would miss writes (a partitioned table).
 */
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { decodeChange } from "../../shared/londiste/change-event.ts";
import { finishBatch, getBatchEvents, installPgq, nextBatch, registerConsumer, tickNow } from "../../shared/pgq/index.ts";
import type { PgqEvent } from "../../shared/pgq/types.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const ROW_Q = "cap_row_q";
const STMT_Q = "cap_stmt_q";
const ROW_TABLE = `"Row ""Cap"""`;
const STMT_TABLE = `"Stmt ""Cap"""`;

const TYPES = `create type mood as enum ('sad', 'ok', 'happy "quoted"');`;
const COLUMNS = `
  "Id" int8, "select" text, n numeric, f8 float8, by bytea, at text[], j jsonb, m mood, tstz timestamptz,
  gen int8 generated always as ("Id" * 2) stored,
  primary key ("select", "Id")`;

let provider: TestDatabase;
let subscriber: TestDatabase;
let writer: pg.PoolClient;
let other: pg.PoolClient;

beforeAll(async () => {
  provider = await createTestDatabase("lond_capstmt_prov");
  subscriber = await createTestDatabase("lond_capstmt_sub");
  await installPgq(provider.pool);
  await runSqlScript(provider.pool, LONDISTE_SQL);
  for (const q of [ROW_Q, STMT_Q]) {
    await provider.query("select pgq.create_queue($1)", [q]);
    await registerConsumer(provider.pool, q, "replay");
  }
  await provider.query(TYPES);
  for (const t of [ROW_TABLE, STMT_TABLE]) {
    await provider.query(`create table ${t} (gone int, ${COLUMNS}); alter table ${t} drop column gone;`);
  }
  await subscriber.query(`${TYPES} create table ${STMT_TABLE} (${COLUMNS});`);
  await provider.query("select londiste.create_capture($1, $2::regclass)", [ROW_Q, ROW_TABLE]);
  await provider.query("select londiste.create_capture($1, $2::regclass, 'statement')", [STMT_Q, STMT_TABLE]);
  writer = await provider.pool.connect();
  await writer.query("set timezone = 'Asia/Kathmandu'; set extra_float_digits = -15; set bytea_output = 'escape'");
  other = await provider.pool.connect();
});

afterAll(async () => {
  writer?.release();
  other?.release();
  await provider?.drop();
  await subscriber?.drop();
});

/** The same statements on both tables, each statement run first on the row table, then on the statement table. */
async function onBoth(client: pg.ClientBase, statements: string[]): Promise<void> {
  for (const table of [ROW_TABLE, STMT_TABLE]) {
    await client.query("begin");
    for (const s of statements) await client.query(s.replaceAll("T", table));
    await client.query("commit");
  }
}

async function batchOf(queue: string): Promise<{ batchId: number; events: PgqEvent[] }> {
  await tickNow(provider.pool, queue);
  const batch = await nextBatch(provider.pool, queue, "replay");
  expect(batch).not.toBeNull();
  return { batchId: batch!.batchId, events: await getBatchEvents(provider.pool, batch!.batchId) };
}

const fields = (e: PgqEvent) => [e.type, e.data, e.extra2, e.extra3, e.extra4];

async function dump(db: TestDatabase): Promise<string[]> {
  const client = await db.pool.connect();
  try {
    await client.query("set timezone = 'UTC'; set extra_float_digits = 3; set bytea_output = 'hex'; set datestyle = 'ISO, YMD'");
    const { rows } = await client.query<{ r: string }>(`select w::text as r from ${STMT_TABLE} w order by "select", "Id"`);
    return rows.map((r) => r.r);
  } finally {
    client.release();
  }
}

/** Replays the statement queue's next batch into the subscriber in one transaction. */
async function replayStatementQueue(): Promise<PgqEvent[]> {
  const { batchId, events } = await batchOf(STMT_Q);
  const applier = await subscriber.pool.connect();
  try {
    await applier.query("set timezone = 'Pacific/Chatham'; set datestyle = 'German'; begin");
    await applyChanges(applier, events.map(decodeChange), { onMissingRow: "error" });
    await applier.query("commit");
  } finally {
    applier.release();
  }
  await finishBatch(provider.pool, batchId);
  return events;
}

describe("statement-level capture", () => {
  it("writes the row trigger's events for multi-row inserts, updates with key changes and NULLs, deletes", async () => {
    await onBoth(writer, [
      `insert into T ("Id", "select", n, f8, by, at, j, m, tstz)
         select g, case g % 4 when 0 then '' when 1 then 'a ''q'' "d"' when 2 then 'b,c\\d' else 'x' end,
                case when g % 5 = 0 then 'NaN' when g % 7 = 0 then null else g / 3.0 end,
                case when g % 6 = 0 then '-0' else g / 7.0 end,
                case when g % 3 = 0 then null else decode(lpad(to_hex(g), 4, '0'), 'hex') end,
                array[g::text, null, '', 'NULL'], jsonb_build_object('g', g, 'k', null),
                (array['sad', 'ok', 'happy "quoted"'])[1 + g % 3]::mood,
                timestamptz '2024-02-29 23:59:59.123456+05:45' + g * interval '1 hour'
           from generate_series(1, 300) g`,
      // key changes: shift a whole range (the new keys collide with old ones only after the statement)
      `update T set "Id" = "Id" + 1000, n = null where "Id" between 10 and 120`,
      // swap the other key column, and NULLs to values and back
      `update T set "select" = "select" || ' moved', f8 = null, at = null where "Id" % 10 = 3`,
      `update T set n = coalesce(n, -0.001), m = null where "Id" > 200`,
      `update T set n = n where false`,
      `delete from T where "Id" % 9 = 0`,
      `insert into T ("Id", "select", n) values (5000, '', 1), (5001, '', 2)`,
    ]);
    await writer.query("begin");
    await writer.query(`insert into ${STMT_TABLE} ("Id", "select") values (9999, 'rolled back')`);
    await writer.query("rollback");
    await writer.query("begin");
    await writer.query(`insert into ${ROW_TABLE} ("Id", "select") values (9999, 'rolled back')`);
    await writer.query("rollback");

    const rowBatch = await batchOf(ROW_Q);
    await finishBatch(provider.pool, rowBatch.batchId);
    const events = await replayStatementQueue();
    expect(events.length).toBeGreaterThan(600);
    expect(events.map(fields)).toEqual(rowBatch.events.map(fields));
    expect(new Set(events.map((e) => e.extra1))).toEqual(new Set([`public.${STMT_TABLE}`]));
    expect(new Set(rowBatch.events.map((e) => e.extra1))).toEqual(new Set([`public.${ROW_TABLE}`]));
    // the ids follow the order of the rows within each statement
    expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((a, b) => a - b));
    expect(await dump(subscriber)).toEqual(await dump(provider));
    expect((await dump(provider)).length).toBeGreaterThan(250);
  });

  it("a query changing the table from several sub-statements: the same events grouped per sub-statement, the same replay", async () => {
    // Row triggers interleave a writable CTE's deletes with the main
    // statement's inserts row by row; statement capture writes each
    // sub-statement's rows together, in the order the sub-statements
    // finish. Sub-statements of one query cannot touch a row another one
    // wrote, so replay ends the same (docs/londiste.md, "Capture modes").
    await onBoth(writer, [
      `with d as (delete from T where "Id" between 1001 and 1020 returning *) insert into T ("Id", "select", n) select "Id" + 7000, "select", n from d`,
      `with d as (delete from T where "Id" between 1021 and 1030 returning *) insert into T ("Id", "select", n) select "Id", "select", -n from d`,
    ]);
    const rowBatch = await batchOf(ROW_Q);
    await finishBatch(provider.pool, rowBatch.batchId);
    const events = await replayStatementQueue();
    const sorted = (es: PgqEvent[]) => es.map((e) => JSON.stringify(fields(e))).sort();
    expect(events.length).toBe(rowBatch.events.length);
    expect(sorted(events)).toEqual(sorted(rowBatch.events));
    expect(events.map((e) => e.type).join("")).toMatch(/^D+I+D+I+$/);
    expect(await dump(subscriber)).toEqual(await dump(provider));
  });

  it("INSERT ... ON CONFLICT DO UPDATE: the updates before the inserts, the same replay, also when an update frees a key", async () => {
    await onBoth(writer, [
      `insert into T ("Id", "select", n) values (20000, 'u', 1), (1, 'up', 2), (20001, 'u', 3), (2, 'up', 4)
         on conflict ("select", "Id") do update set n = excluded.n`,
      `insert into T ("Id", "select", n) values (30000, 'k', 1)`,
      // the first row moves the existing key away, the second takes it
      `insert into T ("Id", "select", n) values (30000, 'k', 2), (30000, 'k', 3)
         on conflict ("select", "Id") do update set "Id" = T."Id" + 1`,
    ]);
    const rowBatch = await batchOf(ROW_Q);
    await finishBatch(provider.pool, rowBatch.batchId);
    const events = await replayStatementQueue();
    const sorted = (es: PgqEvent[]) => es.map((e) => JSON.stringify(fields(e))).sort();
    expect(sorted(events)).toEqual(sorted(rowBatch.events));
    expect(events.slice(-2).map((e) => e.type)).toEqual(["U", "I"]);
    expect(await dump(subscriber)).toEqual(await dump(provider));
  });

  it("a statement that waited for another transaction's row locks gets its events after that transaction's", async () => {
    await other.query("begin");
    await other.query(`update ${STMT_TABLE} set n = 1 where "Id" between 130 and 160`);
    await writer.query("begin");
    const waiting = writer.query(`update ${STMT_TABLE} set n = n + 1 where "Id" between 150 and 180`);
    // the writer is blocked on the other transaction's rows
    for (;;) {
      const { rows } = await provider.query<{ n: string }>(
        "select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      );
      if (Number(rows[0]!.n) > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await other.query(`delete from ${STMT_TABLE} where "Id" = 131`);
    await other.query("commit");
    await waiting;
    await writer.query("commit");
    const events = await replayStatementQueue();
    const firstOfWriter = events.findIndex((e) => e.type === "U" && e.data!.startsWith("(170,"));
    const lastOfOther = events.map((e) => e.type).lastIndexOf("D");
    expect(firstOfWriter).toBeGreaterThan(lastOfOther);
    expect(events.at(-1)!.type).toBe("U");
    expect(await dump(subscriber)).toEqual(await dump(provider));
  });

  it("the 2-argument create_capture keeps statement mode; a partitioned table is refused; drop_capture removes all", async () => {
    const triggers = async (t: string) =>
      (
        await provider.query<{ tgname: string }>(
          "select tgname from pg_trigger where tgrelid = $1::regclass and not tgisinternal order by 1",
          [t],
        )
      ).rows.map((r) => r.tgname);
    const before = await triggers(STMT_TABLE);
    expect(before).toHaveLength(4);
    await provider.query("select londiste.create_capture($1, $2::regclass)", [STMT_Q, STMT_TABLE]);
    expect(await triggers(STMT_TABLE)).toEqual(before);
    expect(await triggers(ROW_TABLE)).toHaveLength(2);

    await provider.query("create table parted (id int primary key) partition by range (id)");
    await expect(provider.query("select londiste.create_capture($1, 'parted', 'statement')", [STMT_Q])).rejects.toMatchObject({
      message: "statement capture needs a plain table",
    });
    await expect(provider.query("select londiste.create_capture($1, $2::regclass, 'batch')", [STMT_Q, STMT_TABLE])).rejects.toMatchObject({
      message: "unknown capture mode",
    });

    await provider.query("select londiste.drop_capture($1, $2::regclass)", [STMT_Q, STMT_TABLE]);
    expect(await triggers(STMT_TABLE)).toEqual([]);
  });
});
