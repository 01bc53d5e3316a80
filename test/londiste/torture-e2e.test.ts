/**
 * Type-and-identifier torture, end to end (docs/protocols.md, "Change
 * capture"): ticker and replay
 * run as their own OS processes, the job is set up with the londiste
 * command line as a user would (`provider install`, `subscriber install`,
 * `provider add`, `subscriber add --expect-sync`), and a writer with hostile
 * session settings changes tables whose schema, table and column names hold
 * quotes, spaces, dots, upper case, unicode and reserved words, with every
 * kind of built-in value (NULL vs '', bytea, json/jsonb, arrays with NULL
 * elements and lower bounds, composite, enum and domain values, numeric
 * NaN/Infinity, float Infinity/-0/NaN, timestamptz, xml, ...), generated,
 * identity and dropped columns, NULLs everywhere, primary key updates (also
 * of a composite key, and key swaps), rows inserted, updated and deleted in
 * one batch, rolled back work, and TRUNCATE followed by inserts, while
 * replay runs. Both databases also have hostile defaults of their own
 * (ALTER DATABASE ... SET), which replay's sessions inherit.
 *
 * Once the subscriber records a tick after the last write, every table
 * compares equal row by row: as text under fixed settings and as the binary
 * send form of each built-in column; no table is in state error and replay
 * never failed.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminQuery, quoteIdent, type TestDatabase } from "../support/db.ts";
import { forceNewTick } from "../../shared/pgq/index.ts";
import { expectOk } from "../support/pgqadm.ts";
import { useProcessCleanup } from "../support/processes.ts";
import { expectTablesEqual, subscriberTableStates, waitCaughtUp } from "./e2e-check.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

const SCHEMA = `"Odd ""Schema"""`;
const MOOD = `${SCHEMA}."Mood ✓"`;
const PAIR = `${SCHEMA}."pair"`;
const POSINT = `${SCHEMA}."posint"`;
/** Canonical names (londiste.canonical_name form), as the command line reports them. */
const T1 = `${SCHEMA}."select"`;
const T2 = `${SCHEMA}."Two Key"`;
const T3 = `public."user"`;
const T4 = `${SCHEMA}."trunc.ated"`;
const KEYS: Record<string, string[]> = {
  [T1]: ["Order"],
  [T2]: ["a b", "Order"],
  [T3]: ["when", "key"],
  [T4]: ["id"],
};

const TYPES = `
create schema ${SCHEMA};
create type ${MOOD} as enum ('sad', 'ok', 'happy "quoted"', 'ünï, comma', 'back\\slash');
create type ${PAIR} as (a int, "b c" text, m ${MOOD}, f float8, tags text[]);
create domain ${POSINT} as int check (value > 0);
`;

/** T1's columns by name; the two sides declare them in different orders around different dropped columns. */
const T1_COLS: Record<string, string> = {
  Order: "int8 primary key",
  "a b": "text",
  ünï: "text",
  i2: "int2",
  i4: "int4",
  i8: "int8",
  n: "numeric",
  nfix: "numeric(10,3)",
  f4: "float4",
  f8: "float8",
  b: "bool",
  vc: "varchar(20)",
  ch: "char(5)",
  BY: "bytea",
  j: "json",
  jb: "jsonb",
  d: "date",
  tm: "time",
  tmtz: "timetz",
  ts: "timestamp",
  tstz: "timestamptz",
  iv: "interval",
  u: "uuid",
  ip: "inet",
  cidr_v: "cidr",
  mac: "macaddr",
  ai: "int4[]",
  at: "text[]",
  af: "float8[]",
  an: "numeric[]",
  a2: "int4[]",
  tsa: "timestamptz[]",
  comp: PAIR,
  comps: `${PAIR}[]`,
  m: MOOD,
  ms: `${MOOD}[]`,
  dom: POSINT,
  bits: "bit(4)",
  vbits: "varbit",
  pt: "point",
  bx: "box",
  r: "int4range",
  tr: "tstzrange",
  mr: "int4multirange",
  mny: "money",
  tsv: "tsvector",
  c1: `"char"`,
  nm: "name",
  oid_v: "oid",
  x: "xml",
  gen: `text generated always as (coalesce("a b", '<null>') || '/' || coalesce("ünï", '<null>')) stored`,
};
const col = (name: string) => `${quoteIdent(name)} ${T1_COLS[name]}`;
const T1_NAMES = Object.keys(T1_COLS);
// Provider: dropped columns at the start and in the middle. Subscriber: another dropped column,
// the columns in reverse order, and an extra column of its own with a default.
const T1_PROVIDER = `create table ${T1} ("gone a" int, ${T1_NAMES.slice(0, 20).map(col).join(", ")},
                                        "gone b" text, ${T1_NAMES.slice(20).map(col).join(", ")});
alter table ${T1} drop column "gone a"; alter table ${T1} drop column "gone b";`;
const T1_SUBSCRIBER = `create table ${T1} ("gone z" bytea, extra_sub text default 'subscriber only', ${[...T1_NAMES].reverse().map(col).join(", ")});
alter table ${T1} drop column "gone z";`;

const otherTables = (IDENTITY: string) => `
create table ${T2} ("Order" int, "a b" text, "USER" text, "from" timestamptz, v int, primary key ("a b", "Order"));
create table ${T3} ("when" timestamptz, "key" bytea, "group" jsonb, "limit" numeric,
                    serial_no int generated ${IDENTITY} as identity, "Ünïcode Ωμέγα" text, primary key ("when", "key"));
create table ${T4} (id int primary key, "x y" text);
`;

/** SQL expression of one value per T1 column; missing columns are NULL. */
type Row = Record<string, string>;

const T1_ROWS: Row[] = [
  {
    Order: "1",
    "a b": "'plain'",
    ünï: "'ünï ✓ 日本 🐘'",
    i2: "1",
    i4: "2",
    i8: "9223372036854775807",
    n: "1.50",
    nfix: "3.1",
    f4: "0.1",
    f8: "0.1",
    b: "true",
    vc: "'v'",
    ch: "'ab'",
    BY: String.raw`'\x00ff'::bytea`,
    j: `'{"a": [1, 2.50],  "a" : 3}'`,
    jb: String.raw`'{"b": null, "u": "\u00e9", "n": 1.0}'`,
    d: "'2024-02-29'",
    tm: "'23:59:59.999999'",
    tmtz: "'12:00+05:30'",
    ts: "'2000-01-01 00:00:00.000001'",
    tstz: "'2024-06-30 23:59:59.123456+14'",
    iv: "'1 year 2 mons -3 days 04:05:06.5'",
    u: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    ip: "'192.168.0.1/24'",
    cidr_v: "'10.0.0.0/8'",
    mac: "'08:00:2b:01:02:03'",
    ai: "'{1,NULL,3}'",
    at: String.raw`array['a,b', 'c"d', null, 'NULL', '', E'new\nline', 'back\slash', '{}']`,
    af: "'{-0,NaN,Infinity,-Infinity,0.30000000000000004,5e-324}'",
    an: "'{NaN,1.500,-0,NULL,Infinity,0.000000000000000000000000000001}'",
    a2: "'[0:1][-1:0]={{1,2},{3,NULL}}'",
    tsa: "array['2024-03-31 02:30:00 Europe/Berlin', 'infinity', null]::timestamptz[]",
    comp: `row(1, 'x, "y"', 'happy "quoted"', '-0', array['a', null])::${PAIR}`,
    comps: `array[row(2, '', 'ünï, comma', 'NaN', '{}')::${PAIR}, null, row(null, null, null, null, null)::${PAIR}]`,
    m: `'back\\slash'`,
    ms: `'{sad,NULL,"happy \\"quoted\\""}'`,
    dom: "7",
    bits: "B'1010'",
    vbits: "B'1'",
    pt: "'(1.5,-2.25)'",
    bx: "'((0,0),(1,1))'",
    r: "'[1,10)'",
    tr: "'[2020-01-01 00:00+00,2021-01-01 00:00+00)'",
    mr: "'{[1,3), [5,7)}'",
    mny: "'12.34'",
    tsv: `'a fat cat:1 "quoted \\\\ word"'`,
    c1: `'"'`,
    nm: `'Name "with" quotes'`,
    oid_v: "4294967295",
    x: `'<a b="1">ünï &amp; <c/></a>'`,
  },
  {
    Order: "2",
    "a b": "''",
    ünï: "''",
    i2: "-32768",
    i4: "0",
    i8: "-9223372036854775808",
    n: "'NaN'",
    nfix: "-0.001",
    f4: "'-0'",
    f8: "'-0'",
    b: "false",
    vc: "''",
    ch: "''",
    BY: "''::bytea",
    j: "'null'",
    jb: "'[]'",
    d: "'infinity'",
    tm: "'00:00'",
    tmtz: "'00:00-12'",
    ts: "'-infinity'",
    tstz: "'infinity'",
    iv: "'0'",
    ip: "'::1'",
    cidr_v: "'::/0'",
    mac: "'ff:ff:ff:ff:ff:ff'",
    ai: "'{}'",
    at: "'{}'",
    af: "'{NULL}'",
    an: "'{}'",
    a2: "'{}'",
    tsa: "'{}'",
    comp: `row(null, null, null, null, null)::${PAIR}`,
    comps: `'{}'`,
    m: "'sad'",
    ms: "'{}'",
    dom: "1",
    bits: "B'0000'",
    vbits: "B''",
    pt: "'(0,0)'",
    bx: "'((-0,-0),(0,0))'",
    r: "'empty'",
    tr: "'(,)'",
    mr: "'{}'",
    mny: "'-0.01'",
    tsv: "''",
    c1: `''`,
    nm: `''`,
    oid_v: "0",
    x: "''",
  },
  // NULL in every column but the key
  { Order: "3" },
  {
    Order: "4",
    "a b": String.raw`E'quote '' and "double" and back\\slash \\\\ and tab\there'`,
    ünï: String.raw`E'\u0001 control, \r\n crlf, zero-width \u200b, rtl \u202e'`,
    i2: "32767",
    i4: "2147483647",
    i8: "0",
    n: "123456789012345678901234567890.123456789000",
    nfix: "1234567.891",
    f4: "'Infinity'",
    f8: "'-Infinity'",
    b: "true",
    vc: "'x'",
    ch: "'abcde'",
    BY: String.raw`'\x5c2227000a'::bytea`,
    j: String.raw`'{"k":"\u00e9", "esc": "\"\\\n"}'`,
    jb: String.raw`'{"k": "\u00e9", "n": 1e400, "big": 123456789012345678901234567890}'`,
    d: "'0001-01-01 BC'",
    tm: "'24:00'",
    tmtz: "'24:00+15:59'",
    ts: "'1999-12-31 23:59:59'",
    tstz: "'1970-01-01 00:00:00+00'",
    iv: "'178000000 years'",
    u: "'00000000-0000-0000-0000-000000000000'",
    ip: "'2001:db8::1/128'",
    cidr_v: "'2001:db8::/32'",
    mac: "'00:00:00:00:00:00'",
    ai: "'{{1,2},{3,4}}'",
    at: String.raw`'{"{}","\\"," "}'`,
    af: "'{1e-300,1e300}'",
    an: "'{Infinity,-Infinity}'",
    a2: "'[5:5]={42}'",
    tsa: "array['0001-01-01 00:00:00+00 BC'::timestamptz]",
    comp: `row(-1, E'line\\nbreak', null, 'Infinity', '{"",NULL,"NULL"}')::${PAIR}`,
    comps: `array[row(1, 'a', 'ok', 1.5, '{x}')::${PAIR}]`,
    m: `'ünï, comma'`,
    ms: `array['ünï, comma', 'back\\slash']::${MOOD}[]`,
    dom: "2147483647",
    bits: "B'1111'",
    vbits: "B'101010101'",
    pt: "'(1e-300,1e300)'",
    bx: "'((1,2),(-3,-4))'",
    r: "'(,5]'",
    tr: "'[,)'",
    mr: "'{(,0], [10,)}'",
    mny: "'92233720368547758.07'",
    tsv: `'ünï:1A,2B ✓'`,
    c1: `'é'`,
    nm: `'${"n".repeat(63)}'`,
    oid_v: "1",
    x: `'text only, no root'`,
  },
  { Order: "5", "a b": "'five'", ünï: "null", dom: "5", d: "'03/04/2024'", ts: "'03/04/2024 01:02:03'", tstz: "'03/04/2024 01:02:03'" },
  { Order: "6", "a b": "'key changes'", ünï: "'six'", f8: "6", tstz: "'2024-03-31 02:30:00'" },
];

function insertRows(table: string, rows: Row[], names: string[]): string {
  const used = names.filter((n) => rows.some((r) => n in r));
  return `insert into ${table} (${used.map(quoteIdent).join(", ")}) values ${rows
    .map((r) => `(${used.map((n) => r[n] ?? "null").join(", ")})`)
    .join(",\n ")}`;
}

/**
 * Database defaults (ALTER DATABASE ... SET) that replay's, the ticker's and the command
 * line's sessions inherit. Left out because the product does not cope yet: a non-ISO
 * DateStyle on the provider (node-pg cannot parse the ticker's timestamps, which come back as
 * null) and array_nulls = off on the subscriber (grouped apply sends NULL elements of its
 * text[] parameters as unquoted NULL, read back as the string 'NULL').
 */
const PROVIDER_DB_SETTINGS: Record<string, string> = {
  timezone: "'America/St_Johns'",
  datestyle: "'SQL, DMY'",
  intervalstyle: "'postgres_verbose'",
  extra_float_digits: "-15",
  bytea_output: "'escape'",
  search_path: "''",
};
const SUBSCRIBER_DB_SETTINGS: Record<string, string> = {
  timezone: "'Pacific/Chatham'",
  datestyle: "'German'",
  intervalstyle: "'iso_8601'",
  extra_float_digits: "0",
  bytea_output: "'escape'",
  search_path: "''",
  standard_conforming_strings: "off",
  array_nulls: "off",
};

/** Runs the test's own DDL with standard string literals, whatever the database's defaults. */
async function ddl(db: TestDatabase, sql: string): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query("set standard_conforming_strings = on");
    await client.query(sql);
  } finally {
    client.release();
  }
}

let job: LondisteJob;
let writer: pg.Client;

beforeAll(async () => {
  job = await createLondisteJob({ label: "lond_torture", extraConfig: ["log_level = debug"] });
  // Hostile defaults that every new session on each database inherits, replay's included.
  for (const [db, settings] of [
    [job.provider, PROVIDER_DB_SETTINGS],
    [job.subscriber, SUBSCRIBER_DB_SETTINGS],
  ] as const) {
    await adminQuery(
      Object.entries(settings)
        .map(([name, value]) => `alter database ${quoteIdent(db.name)} set ${name} = ${value}`)
        .join("; "),
    );
  }
  await ddl(job.provider, `${TYPES} ${T1_PROVIDER} ${otherTables("always")}`);
  await ddl(job.subscriber, `${TYPES} ${T1_SUBSCRIBER} ${otherTables("always")}`);

  writer = new pg.Client({ connectionString: job.provider.url });
  await writer.connect();
  // The writer's own hostile settings (values written by it are read back under fixed ones).
  await writer.query(
    "set datestyle = 'SQL, DMY'; set timezone = 'Asia/Kathmandu'; set extra_float_digits = -15; " +
      "set bytea_output = 'escape'; set intervalstyle = 'sql_standard'",
  );
});

afterAll(async () => {
  await writer?.end().catch(() => {});
  await job?.drop();
});

async function tx(...statements: string[]): Promise<void> {
  await writer.query("begin");
  try {
    for (const s of statements) await writer.query(s);
    await writer.query("commit");
  } catch (error) {
    await writer.query("rollback");
    throw error;
  }
}

describe("type and identifier torture through the londiste command line", () => {
  it("replicates every table equal row by row while replay runs", async () => {
    const replay = job.startReplay();
    await replay.waitForLog("serving admin commands on NATS", { timeoutMs: 15_000 });
    await installJob(job);

    const cliNames = [T1, T2, `"user"`, T4];
    expectOk(await job.londiste("provider", "add", ...cliNames));
    const added = await job.londiste("subscriber", "add", "--expect-sync", ...cliNames);
    expectOk(added);
    expect((await job.londisteJson<string[]>("provider", "tables")).sort()).toEqual(Object.keys(KEYS).sort());

    // ---- batch: inserts everywhere
    await tx(
      insertRows(T1, T1_ROWS, T1_NAMES),
      `insert into ${T2} ("Order", "a b", "USER", "from", v) values
         (1, '', 'empty key part', '2024-01-01 00:00', 1),
         (1, 'a"b', null, null, null),
         (2, E'back\\\\slash', 'x', 'infinity', 0),
         (3, E'new\\nline', '', '-infinity', -1),
         (4, 'ünï ✓', 'NULL', '2024-10-27 02:30:00 Europe/London', 2),
         (5, ' ', 'space key', now(), 3)`,
      `insert into ${T3} ("when", "key", "group", "limit", "Ünïcode Ωμέγα") values
         ('2024-03-31 02:30:00', '\\x00', '{"a": {"b": [1, null, "x"]}}', 'NaN', 'ω'),
         ('2024-03-31 02:30:00', '', 'null', 'Infinity', ''),
         ('2024-03-31 02:30:00.000001', '\\xffff', '"str"', -0.0, null),
         ('epoch', '\\x5c', null, null, null),
         ('infinity', '\\x00', '{}', 1e-20, E'tab\\t')`,
      `insert into ${T4} select g, 'row ' || g from generate_series(1, 5) g`,
    );
    await forceNewTick(job.provider.pool, job.queue); // one batch per step

    // ---- batch: updates, key changes and key swaps, values to NULL and back, grouped runs
    await tx(
      `update ${T1} set f8 = f8 / 3, f4 = f4 * 3, tstz = tstz + interval '1 microsecond',
              at = array_append(at, E'added\\n'), comp = row(9, 'nine', 'ok', '-0', '{9}')::${PAIR} where "Order" = 1`,
      `update ${T1} set ${T1_NAMES.filter((n) => n !== "Order" && n !== "gen").map((n) => `${quoteIdent(n)} = null`).join(", ")} where "Order" = 2`,
      `update ${T1} set ("a b", "ünï", n, f8, jb, at, m, comp) =
              (E'was null\\\\', 'ünï', 'NaN', '-0', '{"x": []}', '{NULL}', 'sad', row(null, '', null, null, null)::${PAIR}) where "Order" = 3`,
      `update ${T1} set "Order" = 60, "a b" = 'moved' where "Order" = 6`,
      `update ${T1} set "Order" = -4 where "Order" = 4`,
      `update ${T1} set "Order" = 4 where "Order" = 5`,
      `update ${T1} set "Order" = 5 where "Order" = -4`,
      `update ${T1} set i4 = coalesce(i4, 0) + 1, vbits = B'11' where "Order" in (1, 2, 3, 60)`,
      `update ${T4} set "x y" = "x y" || ' updated' where id <= 4`,
    );
    await forceNewTick(job.provider.pool, job.queue); // one batch per step

    // ---- one transaction (so one batch): insert, update (also the key), delete; a rolled back savepoint
    await tx(
      `insert into ${T1} ("Order", "a b", dom, at) values (7, 'brief', 1, '{a}')`,
      `update ${T1} set "a b" = 'briefer', at = null where "Order" = 7`,
      `update ${T1} set "Order" = 70 where "Order" = 7`,
      `update ${T1} set f8 = 'NaN' where "Order" = 70`,
      `delete from ${T1} where "Order" = 70`,
      `insert into ${T2} ("Order", "a b", v) values (9, 'tmp', 1)`,
      `update ${T2} set "a b" = 'tmp2', v = 2 where "Order" = 9`,
      `delete from ${T2} where "Order" = 9 and "a b" = 'tmp2'`,
      "savepoint s1",
      `insert into ${T1} ("Order", "a b") values (8, 'rolled back to savepoint')`,
      `update ${T1} set "a b" = 'not this' where "Order" = 1`,
      "rollback to savepoint s1",
      `update ${T1} set "a b" = 'after savepoint' where "Order" = 60`,
    );
    // a whole transaction rolled back
    await writer.query("begin");
    await writer.query(`insert into ${T1} ("Order", "a b") values (9, 'rolled back')`);
    await writer.query(`delete from ${T4}`);
    await writer.query("rollback");
    await forceNewTick(job.provider.pool, job.queue); // one batch per step

    // ---- composite key changes: one part, the other part, both, a swap; timestamptz and bytea keys
    await tx(
      `update ${T2} set "Order" = 10 where "Order" = 1 and "a b" = ''`,
      `update ${T2} set "a b" = 'a"b changed' where "Order" = 1 and "a b" = 'a"b'`,
      `update ${T2} set ("Order", "a b") = (20, 'both') where "Order" = 2`,
      `update ${T2} set "a b" = 'swap' where "Order" = 3`,
      `update ${T2} set "a b" = E'new\\nline' where "Order" = 4`,
      `update ${T2} set "a b" = 'ünï ✓' where "Order" = 3`,
      `update ${T2} set "USER" = null, "from" = null, v = null where "Order" = 5`,
      `update ${T3} set "when" = "when" + interval '1 microsecond' where "key" = '\\x00' and "when" < 'infinity'`,
      `update ${T3} set "key" = "key" || '\\x00'::bytea, "group" = '{"moved": true}' where "key" = '\\x5c'`,
      `delete from ${T3} where "key" = ''`,
    );
    await forceNewTick(job.provider.pool, job.queue); // one batch per step

    // ---- TRUNCATE followed by inserts (some with the keys from before) in one transaction; then alone
    await tx(
      `truncate ${T2}`,
      `insert into ${T2} ("Order", "a b", "USER", v) values (1, '', 'again', 1), (20, 'both', 'again', 2), (30, 'new', null, null)`,
    );
    await forceNewTick(job.provider.pool, job.queue); // one batch per step
    await tx(`truncate ${T4}`);
    await forceNewTick(job.provider.pool, job.queue); // one batch per step
    await tx(`insert into ${T4} values (1, 'after truncate'), (2, null), (3, '')`);

    // ---- runs long enough to be grouped: inserts, non-key updates, deletes
    await tx(
      `insert into ${T1} ("Order", "a b", f8, dom, ai) select g, 'bulk ' || g, g / 7.0, g, array[g, null] from generate_series(100, 140) g`,
      `update ${T1} set f8 = -f8, at = array['x', null] where "Order" between 100 and 130`,
      `delete from ${T1} where "Order" between 100 and 110`,
      `update ${T1} set "Order" = "Order" + 1000 where "Order" between 131 and 135`,
    );
    // ---- a burst of small transactions: several land in one batch, the same row changes in each
    for (let i = 0; i < 25; i++) {
      await tx(
        `update ${T1} set i8 = coalesce(i8, 0) + 1, "a b" = 'burst ' || ${i} where "Order" = 3`,
        `insert into ${T4} values (${100 + i}, 'burst')`,
        ...(i % 3 === 2 ? [`delete from ${T4} where id = ${99 + i}`] : []),
      );
    }

    await waitCaughtUp(job);
    const dumps = new Map<string, string[]>();
    const binaries = new Map<string, Array<Array<string | null>>>();
    for (const [table, keys] of Object.entries(KEYS)) {
      const dump = await expectTablesEqual(job, table, keys);
      dumps.set(table, dump.text);
      binaries.set(table, dump.binary);
    }

    // The dumps are not trivially equal: the hard values are there.
    const t1 = dumps.get(T1)!;
    expect(t1.length).toBe(6 + 30);
    expect(t1.find((r) => r.startsWith("(1,"))).toContain("ünï ✓ 日本 🐘");
    const row2 = t1.find((r) => r.startsWith("(2,"))!; // NULL in every column but the key, i4, vbits and the generated one
    expect(row2).toMatch(/^\(2,,,,1,,/);
    expect(row2).toMatch(/,11,{12}<null>\/<null>\)$/);
    expect(t1.find((r) => r.startsWith("(3,"))).toContain(",NaN,,,-0,");
    // float8send(-0): the sign bit made it, as bits
    expect(binaries.get(T1)![t1.findIndex((r) => r.startsWith("(3,"))]).toContain("8000000000000000");
    expect(t1.find((r) => r.startsWith("(4,"))).toContain("five"); // 4 and 5 swapped keys
    expect(t1.find((r) => r.startsWith("(5,"))).toContain(",Infinity,-Infinity,");
    expect(dumps.get(T2)).toHaveLength(3);
    expect(dumps.get(T3)).toHaveLength(4);
    expect(dumps.get(T4)).toHaveLength(3 + 25 - 8);

    const states = await subscriberTableStates(job);
    expect(states.map((s) => [s.table, s.state, s.error]).sort()).toEqual(Object.keys(KEYS).sort().map((t) => [t, "ok", null]));
    // The writes spread over many ticks (replay may merge a backlog of ticks into one batch).
    const ticksReplayed = replay.logs("batch done").reduce((sum, l) => sum + Number(l.ticks ?? 1), 0);
    expect(ticksReplayed).toBeGreaterThanOrEqual(8);
    expect(replay.logs("replay failed")).toEqual([]);
    expect(replay.logs("table stopped")).toEqual([]);
    expect(replay.logs("found no row")).toEqual([]);
    // Neither service logged an error under the hostile database defaults.
    for (const service of [replay, job.ticker]) expect(service.lines.filter((l) => (l.level ?? 0) >= 50), service.label).toEqual([]);
  });
});
