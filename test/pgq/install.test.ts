/**
 * installPgq (the TypeScript installer reading sql/pgq/install.sql): a
 * second install on an installed database is a no-op. Same function
 * definitions, same tables, same schema_migration rows, and queue data
 * survives it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  getBatchEvents,
  insertEvent,
  installPgq,
  nextBatch,
  pgqSchemaVersion,
  registerConsumer,
  tickNow,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { num, value } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-install");
});
afterAll(async () => {
  await db?.drop();
});

async function schemaState() {
  const { rows: functions } = await db.pool.query(
    `select p.oid::int as oid, p.oid::regprocedure::text as sig, pg_get_functiondef(p.oid) as def
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'pgq' order by 2`,
  );
  const { rows: relations } = await db.pool.query(
    `select c.oid::int as oid, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'pgq' order by 2`,
  );
  const { rows: migrations } = await db.pool.query(
    "select version, name, applied_at from pgq.schema_migration order by version",
  );
  return { functions, relations, migrations };
}

describe("installPgq", () => {
  it("installs the schema: version 2.1.4, migrations recorded", async () => {
    expect(await pgqSchemaVersion(db.pool)).toBe(0);
    await installPgq(db.pool);
    expect(await value(db.pool, "select pgq.version()")).toBe("2.1.4");
    const level = await pgqSchemaVersion(db.pool);
    expect(level).toBeGreaterThanOrEqual(1);
    expect(level).toBe(await num(db.pool, "select max(version) from pgq.schema_migration"));
    expect(await num(db.pool, "select count(*) from pgq.schema_migration")).toBe(
      await num(db.pool, "select count(distinct version) from pgq.schema_migration"),
    );
  });

  it("a second install is a no-op and keeps queues, consumers, ticks and events", async () => {
    await createQueue(db.pool, "myqueue");
    await registerConsumer(db.pool, "myqueue", "consumer");
    const id = await insertEvent(db.pool, "myqueue", { type: "kept", data: "across install" });
    const before = await schemaState();
    expect(before.functions.length).toBeGreaterThan(30);

    await installPgq(db.pool);

    const after = await schemaState();
    expect(after.migrations).toEqual(before.migrations);
    expect(after.functions).toEqual(before.functions);
    expect(after.relations).toEqual(before.relations);

    // the queue works on, and the event inserted before the reinstall is delivered
    const tickId = await tickNow(db.pool, "myqueue");
    const batch = (await nextBatch(db.pool, "myqueue", "consumer"))!;
    expect(batch).toMatchObject({ prevTickId: 1, tickId });
    expect((await getBatchEvents(db.pool, batch.batchId)).map((e) => [e.id, e.type, e.data])).toEqual([
      [id, "kept", "across install"],
    ]);
  });

  it("two installers at once: both succeed and the migrations apply once", async () => {
    const fresh = await createTestDatabase("pgq-install-concurrent");
    try {
      await Promise.all([installPgq(fresh.pool), installPgq(fresh.pool)]);
      const { rows } = await fresh.pool.query<{ n: string; d: string }>(
        "select count(*) as n, count(distinct version) as d from pgq.schema_migration",
      );
      expect(Number(rows[0]!.n)).toBe(Number(rows[0]!.d));
      expect(Number(rows[0]!.n)).toBeGreaterThan(0);
      expect(await value(fresh.pool, "select pgq.version()")).toBe("2.1.4");
    } finally {
      await fresh.drop();
    }
  });
});
