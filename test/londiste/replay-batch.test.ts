/**
 * One replay round end to end, in process (the replay service around it
 * comes later): provider changes captured into PgQ reach the subscriber
 * table in state `ok` together with the batch's end tick; a batch whose
 * subscriber commit happened but whose finish_batch was lost is skipped
 * (no duplicate-key error, counts unchanged); a subscriber position that
 * does not match the batch stops replay loudly; events of unknown type are
 * set aside as failed (docs/protocols.md, "Replay: one batch, exactly
 * once"); behind by several ticks, one batch spans them, but never past a
 * table's handover tick or a held tick.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { applyChanges } from "../../shared/londiste/apply.ts";
import { installPgq, registerConsumer, tickNow } from "../../shared/pgq/index.ts";
import { type ApplyChanges, replayOneBatch, type ReplaySettings } from "../../services/replay/replay-batch.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const settings: ReplaySettings = { queue: "replika", consumer: "job", ignoreTruncate: false };
const apply: ApplyChanges = async (client, changes) => {
  await applyChanges(client, changes, { onMissingRow: "error" });
};

let provider: TestDatabase;
let subscriber: TestDatabase;

beforeAll(async () => {
  provider = await createTestDatabase("lond_replay_prov");
  subscriber = await createTestDatabase("lond_replay_sub");
  await installPgq(provider.pool);
  await runSqlScript(provider.pool, LONDISTE_SQL);
  await runSqlScript(subscriber.pool, LONDISTE_SQL);
  for (const db of [provider, subscriber]) {
    await db.query("create table data1 (id int primary key, data text); create table other (id int primary key); create table data2 (id int primary key)");
  }
  await provider.query("select pgq.create_queue('replika')");
  await provider.query("select londiste.provider_add_table('replika', 'data1')");
  await provider.query("select londiste.provider_add_table('replika', 'other')");
  await provider.query("select londiste.provider_add_table('replika', 'data2')");
  await registerConsumer(provider.pool, "replika", "job");
  await subscriber.query("select londiste.subscriber_add_table('replika', 'data1')");
  await subscriber.query("select londiste.subscriber_set_table_state('replika', 'data1', null, 'ok')");
  await subscriber.query("select londiste.subscriber_add_table('replika', 'data2')");
  await subscriber.query("select londiste.subscriber_set_table_state('replika', 'data2', null, 'ok')");
  // `other` is registered but not in sync yet: replay leaves its changes alone.
  await subscriber.query("select londiste.subscriber_add_table('replika', 'other')");
});

afterAll(async () => {
  await provider?.drop();
  await subscriber?.drop();
});

const rows = async (db: TestDatabase, table: string) => (await db.query(`select * from ${table} order by id`)).rows;

describe("one replay round", () => {
  it("applies the ok tables' changes and records the end tick in the same transaction", async () => {
    // `other` waits at (none): replay moves it to in-copy and asks for a copy, once.
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toEqual({ kind: "idle", copyRequested: ["public.other"] });
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toEqual({ kind: "idle", copyRequested: [] });
    await provider.query("insert into data1 values (1, 'a'), (2, 'b'), (3, 'c'); insert into other values (1)");
    await provider.query("update data1 set data = 'B', id = 20 where id = 2; delete from data1 where id = 3");
    const tick = await tickNow(provider.pool, "replika");
    const outcome = await replayOneBatch(provider.pool, subscriber.pool, settings, apply);
    expect(outcome).toMatchObject({ kind: "applied", changes: 5, failedEvents: 0, batch: { tickId: tick } });
    expect(await rows(subscriber, "data1")).toEqual(await rows(provider, "data1"));
    expect(await rows(subscriber, "other")).toEqual([]);
    expect((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t).toBe(String(tick));
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "idle" });
  });

  it("skips a batch that was applied but not finished (crash between the two commits)", async () => {
    await provider.query("insert into data1 values (4, 'd')");
    const tick = await tickNow(provider.pool, "replika");
    // The crash: the subscriber committed the batch, finish_batch never ran.
    let crashed = false;
    const crashing: ReplaySettings = {
      ...settings,
      afterSubscriberCommit: async () => {
        crashed = true;
        throw new Error("replay killed before finish_batch");
      },
    };
    await expect(replayOneBatch(provider.pool, subscriber.pool, crashing, apply)).rejects.toThrow("replay killed");
    expect(crashed).toBe(true);
    expect((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t).toBe(String(tick));

    // Restarted: the same batch comes back and is skipped, not applied twice (no duplicate key).
    const outcome = await replayOneBatch(provider.pool, subscriber.pool, settings, apply);
    expect(outcome).toMatchObject({ kind: "skipped", batch: { tickId: tick } });
    expect(await rows(subscriber, "data1")).toEqual(await rows(provider, "data1"));
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "idle" });
  });

  it("rolls back everything when the failure is not the data's (deadlock, lost connection), and applies the batch on retry", async () => {
    await provider.query("insert into data1 values (5, 'e'), (6, 'f')");
    const tick = await tickNow(provider.pool, "replika");
    let calls = 0;
    const flaky: ApplyChanges = async (client, changes, dest) => {
      if (++calls === 1) throw Object.assign(new Error("deadlock detected"), { code: "40P01" });
      await apply(client, changes, dest);
    };
    await expect(replayOneBatch(provider.pool, subscriber.pool, settings, flaky)).rejects.toMatchObject({ code: "40P01" });
    expect((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t).not.toBe(String(tick));
    expect((await subscriber.query("select count(*)::int as n from data1 where id = 6")).rows[0].n).toBe(0);
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, flaky)).toMatchObject({ kind: "applied", batch: { tickId: tick } });
    expect(await rows(subscriber, "data1")).toEqual(await rows(provider, "data1"));
  });

  it("a missing privilege fails the batch (retried until a GRANT), it does not stop the table", async () => {
    await provider.query("insert into data1 values (100, 'granted')");
    const tick = await tickNow(provider.pool, "replika");
    let calls = 0;
    const denied: ApplyChanges = async (client, changes, dest) => {
      if (++calls === 1) throw Object.assign(new Error("permission denied for table data1"), { code: "42501" });
      await apply(client, changes, dest);
    };
    await expect(replayOneBatch(provider.pool, subscriber.pool, settings, denied)).rejects.toMatchObject({ code: "42501" });
    const state = await subscriber.query("select merge_state from londiste.subscriber_table where table_name = 'public.data1'");
    expect(state.rows[0].merge_state).toBe("ok");
    expect((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t).not.toBe(String(tick));
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, denied)).toMatchObject({
      kind: "applied",
      batch: { tickId: tick },
      tableErrors: [],
    });
    expect(await rows(subscriber, "data1")).toEqual(await rows(provider, "data1"));
  });

  it("stops loudly when the subscriber's position does not match the batch", async () => {
    await provider.query("insert into data1 values (7, 'g')");
    await tickNow(provider.pool, "replika");
    await subscriber.query("select londiste.set_last_tick('job', 1)");
    await expect(replayOneBatch(provider.pool, subscriber.pool, settings, apply)).rejects.toThrow(/^Lost position: the subscriber recorded tick 1/);
    expect((await subscriber.query("select count(*)::int as n from data1 where id = 7")).rows[0].n).toBe(0);
  });

  it("sets events of unknown type aside as failed and carries on", async () => {
    await subscriber.query("select londiste.set_last_tick('job', null)");
    await provider.query("select pgq.insert_event('replika', 'X', 'mystery')");
    await tickNow(provider.pool, "replika");
    // The batch held back by the previous test comes first (its position is reset now), then this one.
    const outcomes = [];
    for (let o = await replayOneBatch(provider.pool, subscriber.pool, settings, apply); o.kind !== "idle"; ) {
      outcomes.push(o);
      o = await replayOneBatch(provider.pool, subscriber.pool, settings, apply);
    }
    expect(outcomes.map((o) => [o.kind, o.kind === "applied" ? o.failedEvents : null])).toEqual([
      ["applied", 0],
      ["applied", 1],
    ]);
    expect(await rows(subscriber, "data1")).toEqual(await rows(provider, "data1"));
    const failed = await provider.query("select ev_type, ev_failed_reason from pgq.failed_event_list('replika', 'job')");
    expect(failed.rows).toEqual([{ ev_type: "X", ev_failed_reason: "Unknown operation" }]);
  });

  it("a change that cannot be applied stops only its table, with the reason; the other tables go on", async () => {
    await subscriber.query("insert into data1 values (8, 'conflict')");
    await provider.query("insert into data2 values (1); insert into data1 values (8, 'h'), (9, 'i'); insert into data2 values (2)");
    const tick = await tickNow(provider.pool, "replika");
    const outcome = await replayOneBatch(provider.pool, subscriber.pool, settings, apply);
    expect(outcome).toMatchObject({ kind: "applied", batch: { tickId: tick }, tableErrors: ["public.data1"] });
    expect(await rows(subscriber, "data2")).toEqual([{ id: 1 }, { id: 2 }]);
    const state = await subscriber.query("select merge_state, last_error from londiste.subscriber_get_table_info('replika') where table_name = 'public.data1'");
    expect(state.rows[0].merge_state).toBe("error");
    expect(state.rows[0].last_error).toMatch(/duplicate key/);
    expect((await subscriber.query("select count(*)::int as n from data1 where id = 9")).rows[0].n).toBe(0);
    // Later batches leave the stopped table alone and keep the others going.
    await provider.query("insert into data1 values (10, 'j'); insert into data2 values (3)");
    await tickNow(provider.pool, "replika");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", changes: 1, tableErrors: [] });
    expect(await rows(subscriber, "data2")).toEqual(await rows(provider, "data2"));
  });

  it("hands a table over from the copy at the copy's tick: wanna-sync:T → do-sync:T, then replay applies it (also when idle)", async () => {
    const state = async () =>
      (await subscriber.query("select merge_state from londiste.subscriber_table where table_name = 'public.other'")).rows[0].merge_state;
    await drain();
    const at = Number((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t);
    // The copy stopped one tick ahead of replay: replay ignores the table until it stands at that tick.
    await provider.query("insert into other values (100)");
    const ahead = await tickNow(provider.pool, "replika");
    await subscriber.query("select londiste.subscriber_set_table_state('replika', 'other', null, $1)", [`wanna-sync:${ahead}`]);
    await subscriber.query("insert into other values (100)"); // what the copy applied
    await provider.query("insert into other values (101)");
    await tickNow(provider.pool, "replika");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", batch: { prevTickId: at } });
    expect(await state()).toBe(`wanna-sync:${ahead}`);
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", batch: { prevTickId: ahead } });
    expect(await state()).toBe(`do-sync:${ahead}`);
    expect(await rows(subscriber, "other")).toEqual([{ id: 100 }, { id: 101 }]);
    // Idle: no batch is needed to take over at the position replay stands at.
    await drain();
    const idleAt = Number((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t);
    await subscriber.query("select londiste.subscriber_set_table_state('replika', 'other', null, $1)", [`wanna-sync:${idleAt}`]);
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "idle" });
    expect(await state()).toBe(`do-sync:${idleAt}`);
    const history = await subscriber.query("select to_state, event->>'type' as type from londiste.sync_outbox where table_name = 'public.other' order by id");
    expect(history.rows.map((r) => r.to_state)).toContain(`do-sync:${ahead}`);
  });
});

async function drain() {
  while ((await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).kind !== "idle");
}

describe("replay hold (for compare/repair)", () => {
  it("stops at the held tick while the hold lives, and goes on when it expires or is released", async () => {
    await drain();
    const at = Number((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t);
    await subscriber.query("insert into londiste.replay_hold values ('job', $1, 'test', now() + interval '1 minute')", [at]);
    await provider.query("insert into data2 values (50)");
    await tickNow(provider.pool, "replika");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "idle", held: true });
    expect((await subscriber.query("select count(*)::int as n from data2 where id = 50")).rows[0].n).toBe(0);
    await subscriber.query("update londiste.replay_hold set expires_at = now() - interval '1 second'");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied" });
    expect((await subscriber.query("select count(*)::int as n from data2 where id = 50")).rows[0].n).toBe(1);
    await subscriber.query("delete from londiste.replay_hold");
  });
});

describe("merged batches (replay behind by several ticks)", () => {
  const recorded = async () => Number((await subscriber.query("select londiste.get_last_tick('job') as t")).rows[0].t);
  /** One insert into data2 per tick; the ticks made. */
  const ticksWithRows = async (ids: number[]) => {
    const ticks: number[] = [];
    for (const id of ids) {
      await provider.query("insert into data2 values ($1)", [id]);
      ticks.push(await tickNow(provider.pool, "replika"));
    }
    return ticks;
  };

  it("takes the waiting ticks in one batch, applied with its end tick in one transaction", async () => {
    await drain();
    const at = await recorded();
    const ticks = await ticksWithRows([200, 201, 202]);
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({
      kind: "applied",
      changes: 3,
      batch: { prevTickId: at, tickId: ticks[2] },
    });
    expect(await recorded()).toBe(ticks[2]);
    expect(await rows(subscriber, "data2")).toEqual(await rows(provider, "data2"));
    // Bounded by events (counted by the event sequence): the first tick reaching mergeMaxEvents ends the batch.
    const more = await ticksWithRows([203, 204, 205, 206]);
    const bounded = await replayOneBatch(provider.pool, subscriber.pool, { ...settings, mergeMaxEvents: 2 }, apply);
    expect(bounded).toMatchObject({ kind: "applied", batch: { prevTickId: ticks[2] } });
    expect(bounded.kind === "applied" && bounded.batch.tickId).toBeLessThan(more[3]!);
    await drain();
    expect(await rows(subscriber, "data2")).toEqual(await rows(provider, "data2"));
  });

  it("never passes a held tick, and takes one tick at a time while a hold is being claimed", async () => {
    await drain();
    const at = await recorded();
    const ticks = await ticksWithRows([210, 211, 212, 213]);
    // A hold row whose tick is not known yet (-1): one tick per batch.
    await subscriber.query("insert into londiste.replay_hold values ('job', -1, 'test', now() + interval '1 minute')");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", batch: { prevTickId: at, tickId: ticks[0] } });
    // Held at the third tick: the batch ends there, and replay stops there.
    await subscriber.query("update londiste.replay_hold set tick_id = $1", [ticks[2]]);
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", batch: { tickId: ticks[2] } });
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "idle", held: true });
    expect(await recorded()).toBe(ticks[2]);
    expect((await subscriber.query("select count(*)::int as n from data2 where id = 213")).rows[0].n).toBe(0);
    await subscriber.query("delete from londiste.replay_hold");
    expect(await replayOneBatch(provider.pool, subscriber.pool, settings, apply)).toMatchObject({ kind: "applied", batch: { tickId: ticks[3] } });
    expect(await rows(subscriber, "data2")).toEqual(await rows(provider, "data2"));
  });
});
