/**
 * Acceptance (docs/pgq.md, "PgQ in five steps (plain SQL)"): a session of
 * plain psql drives the whole
 * queue cycle (create, register, insert, tick, next_batch, get_batch_events,
 * event_retry, finish_batch) with the Skytools 2 function names.
 *
 * PgQ is installed with `psql -f sql/pgq/install.sql` twice (the second run
 * must change nothing), then test/pgq/sql/psql-cycle.sql runs through the
 * real psql binary and its output is checked line by line.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PGQ_INSTALL_SQL } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { num, value } from "./helpers.ts";

const run = promisify(execFile);
const CYCLE_SQL = fileURLToPath(new URL("./sql/psql-cycle.sql", import.meta.url));

async function psql(url: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run("psql", ["-v", "ON_ERROR_STOP=1", "-X", "-q", "-At", ...args, url], {
      env: { ...process.env, PGOPTIONS: "", PAGER: "" },
    });
  } catch (error) {
    const e = error as { message: string; stdout?: string; stderr?: string };
    throw new Error(`psql ${args.join(" ")} failed: ${e.message}\nstdout:\n${e.stdout}\nstderr:\n${e.stderr}`);
  }
}

/** Function signatures and bodies, tables and migrations of the pgq schema. */
async function schemaState(db: TestDatabase) {
  const { rows: functions } = await db.pool.query<{ sig: string; def: string }>(
    `select p.oid::regprocedure::text as sig, pg_get_functiondef(p.oid) as def
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'pgq' order by 1`,
  );
  const { rows: relations } = await db.pool.query(
    `select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'pgq' order by 1`,
  );
  const { rows: migrations } = await db.pool.query(
    "select version, name, applied_at from pgq.schema_migration order by version",
  );
  return { functions, relations, migrations };
}

describe("plain psql drives the queue cycle", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase("pgq-psql-cycle");
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("psql -f sql/pgq/install.sql installs PgQ; a second run changes nothing", async () => {
    const first = await psql(db.url, ["-f", PGQ_INSTALL_SQL]);
    expect(first.stderr).toBe("");
    const installed = await schemaState(db);
    expect(installed.functions.length).toBeGreaterThan(30);
    expect(installed.functions.map((f) => f.sig)).toEqual(
      expect.arrayContaining([
        "pgq.create_queue(text)",
        "pgq.register_consumer(text,text)",
        "pgq.insert_event(text,text,text)",
        "pgq.ticker(text)",
        "pgq.next_batch(text,text)",
        "pgq.get_batch_events(bigint)",
        "pgq.event_retry(bigint,bigint,integer)",
        "pgq.finish_batch(bigint)",
      ]),
    );
    expect(installed.migrations.length).toBeGreaterThan(0);

    const second = await psql(db.url, ["-f", PGQ_INSTALL_SQL]);
    expect(second.stderr).toBe("");
    expect(await schemaState(db)).toEqual(installed);
  });

  it("create, register, insert, tick, next_batch, get_batch_events, event_retry, finish_batch", async () => {
    const { stdout, stderr } = await psql(db.url, ["-f", CYCLE_SQL]);
    expect(stdout.trimEnd().split("\n")).toEqual([
      "version|2.1.4",
      "create_queue|1",
      "create_queue_again|0",
      "register_consumer|1",
      "next_batch_no_tick|NULL",
      "insert_event|1",
      "insert_event|2",
      "current_event_table|pgq.event_1_0",
      "force_tick|1",
      "ticker|2",
      "batch|1",
      "batch_again|1",
      "batch_info|myqueue|consumer|1|2",
      "event|1|NULL|type1|data1|NULL|NULL",
      "event|2|NULL|type2|data2|ex1|ex4",
      "event_retry|1",
      "event_retry_again|0",
      "finish_batch|1",
      "finish_batch_again|0",
      "next_batch_no_tick|NULL",
      "maint_retry_events|1",
      "force_tick|2",
      "ticker|3",
      "batch|2",
      "event|2|1|type2|data2|ex1|ex4",
      "finish_batch|1",
      "consumer_info|myqueue|consumer|3|NULL",
      "unregister_consumer|1",
      "drop_queue|1",
      "queues_left|0",
    ]);
    // the only message: finish_batch on a batch that is already finished
    expect(stderr.trim().split("\n")).toEqual([expect.stringMatching(/WARNING: {2}finish_batch: batch 1 not found$/)]);
  });

  it("the database is left consistent: nothing in the retry or failed queues, no ticks", async () => {
    expect(await num(db.pool, "select count(*) from pgq.retry_queue")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.failed_queue")).toBe(0);
    expect(await num(db.pool, "select count(*) from pgq.tick")).toBe(0);
    expect(await value(db.pool, "select to_regclass('pgq.event_1') is null")).toBe(true);
  });
});
