/**
 * What replay counts for its metrics (docs/metrics.md): a replay round in
 * process tells onApplied, after the subscriber commit, the change events
 * it applied per table and operation: not those of a table stopped by an
 * error in the batch, not those of a batch that failed (only the retry,
 * once), and with the updates and deletes that found no row as missed.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { installPgq, registerConsumer, tickNow } from "../../shared/pgq/index.ts";
import { type AppliedCount, type ApplyChanges, replayOneBatch, type ReplaySettings } from "../../services/replay/replay-batch.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));

let provider: TestDatabase;
let subscriber: TestDatabase;
let told: AppliedCount[] = [];
const settings: ReplaySettings = { queue: "replika", consumer: "job", ignoreTruncate: false, onApplied: (c) => told.push(c) };
const apply: ApplyChanges = (client, changes, destTable) => applyChanges(client, changes, { destTable, onMissingRow: "log" });

/** What onApplied was told by one round, sorted. */
async function round(applyWith: ApplyChanges = apply): Promise<string[]> {
  told = [];
  await replayOneBatch(provider.pool, subscriber.pool, settings, applyWith);
  return told.map((c) => `${c.table} ${c.op} ${c.n}${c.missed ? ` missed ${c.missed}` : ""}`).sort();
}

beforeAll(async () => {
  provider = await createTestDatabase("lond_counts_prov");
  subscriber = await createTestDatabase("lond_counts_sub");
  await installPgq(provider.pool);
  for (const db of [provider, subscriber]) {
    await runSqlScript(db.pool, LONDISTE_SQL);
    await db.query("create table a (id int primary key, v text); create table b (id int primary key)");
  }
  await provider.query("select pgq.create_queue('replika')");
  for (const t of ["a", "b"]) {
    await provider.query("select londiste.provider_add_table('replika', $1)", [t]);
    await subscriber.query("select londiste.subscriber_add_table('replika', $1)", [t]);
    await subscriber.query("select londiste.subscriber_set_table_state('replika', $1, null, 'ok')", [t]);
  }
  await registerConsumer(provider.pool, "replika", "job");
  // The first round registers the position.
  while ((await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).kind !== "idle");
});

afterAll(async () => {
  await provider?.drop();
  await subscriber?.drop();
});

describe("replay's counts", () => {
  it("per table and operation, with missed rows, after the commit", async () => {
    await provider.query("insert into a values (1, 'x'), (2, 'y'), (3, 'z'); insert into b values (1)");
    await tickNow(provider.pool, "replika");
    expect(await round()).toEqual(["public.a insert 3", "public.b insert 1"]);

    // Row 2 is gone on the subscriber: its update finds nothing (on_missing_row = log).
    await subscriber.query("delete from a where id = 2");
    await provider.query("update a set v = 'u' where id in (1, 2); delete from a where id = 3; truncate b");
    await tickNow(provider.pool, "replika");
    expect(await round()).toEqual(["public.a delete 1", "public.a update 2 missed 1", "public.b truncate 1"]);
  });

  it("leave out a table stopped by an error in the batch", async () => {
    await subscriber.query("insert into b values (5)");
    await provider.query("insert into a values (10, 'a'); insert into b values (5), (6); insert into a values (11, 'b')");
    await tickNow(provider.pool, "replika");
    expect(await round()).toEqual(["public.a insert 2"]);
  });

  it("count a batch that failed and was retried once", async () => {
    await provider.query("insert into a values (20, 'r'), (21, 's')");
    await tickNow(provider.pool, "replika");
    const deadlocked: ApplyChanges = async () => {
      throw Object.assign(new Error("deadlock detected"), { code: "40P01" });
    };
    await expect(round(deadlocked)).rejects.toMatchObject({ code: "40P01" });
    expect(told).toEqual([]);
    expect(await round()).toEqual(["public.a insert 2"]);
  });
});
