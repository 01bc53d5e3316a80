/**
 * The copy service's small parts: the snapshot visibility rule, the batch
 * position rule, the column check, copy consumer names, and the fence tick
 * helper (shared/pgq forceNewTick) against a real PgQ: a tick made after
 * the call, also when the ticker is paused for a while, never an older
 * tick that turns up meanwhile, and a timeout when no tick comes; the
 * lease's SQL condition on merge_state, built from the machine, holds for
 * exactly the states a copy worker serves.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyConsumerName } from "../../services/copy/copy-consumer.ts";
import { copyColumns } from "../../services/copy/initial-copy.ts";
import { IN_COPY_STATE, mergeStateCondition } from "../../services/copy/lease.ts";
import { EMPTY_CONTEXT, isCopyState, stateText, SYNC_STATES } from "../../shared/londiste/sync-machine.ts";
import { decideBatch } from "../../shared/londiste/position.ts";
import { parseSnapshot, visibleIn } from "../../services/copy/snapshot.ts";
import type { TableShape } from "../../shared/londiste/table-shape.ts";
import { createQueue, forceNewTick, installPgq, setQueueConfig } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { sleep } from "../support/wait.ts";

describe("snapshot visibility", () => {
  it("follows xmin, xmax and the in-progress list", () => {
    const s = parseSnapshot("100:110:100,102,105");
    expect([99, 100, 101, 102, 103, 105, 109, 110, 111].map((x) => visibleIn(x, s))).toEqual([
      true, // < xmin
      false, // xmin is the oldest one still running
      true,
      false, // in progress
      true,
      false,
      true,
      false, // >= xmax
      false,
    ]);
    expect(visibleIn(5, parseSnapshot("10:10:"))).toBe(true);
    expect(visibleIn(10, parseSnapshot("10:10:"))).toBe(false);
    expect(() => parseSnapshot("10:5:")).toThrow(/bad snapshot/);
    expect(() => parseSnapshot("x")).toThrow(/bad snapshot/);
  });
});

describe("batch position rule", () => {
  it("applies from the recorded start, skips a recorded end, refuses anything else", () => {
    expect(decideBatch(null, { prevTickId: 3, tickId: 4 })).toEqual({ action: "apply" });
    expect(decideBatch(3, { prevTickId: 3, tickId: 4 })).toEqual({ action: "apply" });
    expect(decideBatch(4, { prevTickId: 3, tickId: 4 })).toEqual({ action: "skip" });
    const e = decideBatch(2, { prevTickId: 3, tickId: 4 });
    expect(e.action).toBe("error");
  });
});

function shape(columns: Array<[string, { generated?: boolean }]>): TableShape {
  return {
    requested: "public.t",
    name: "public.t",
    oid: 1,
    relkind: "r",
    primaryKey: ["id"],
    columns: new Map(
      columns.map(([name, c]) => [name, { name, type: "int4", castType: "int4", generated: c.generated ?? false, identityAlways: false }]),
    ),
  };
}

describe("copy columns", () => {
  it("takes the provider's columns in its order, skips those the subscriber generates, fails on a missing one", () => {
    const provider = shape([["id", {}], ["b", {}], ["a", {}], ["g", { generated: true }], ["h", {}]]);
    const dest = shape([["a", {}], ["id", {}], ["b", {}], ["h", { generated: true }], ["extra", {}]]);
    // g is generated on the provider and absent here: nothing to copy; h is computed by the subscriber.
    expect(copyColumns(provider, dest)).toEqual(["id", "b", "a"]);
    expect(() => copyColumns(shape([["id", {}], ["x y", {}]]), dest)).toThrow("Column x y does not exist on dest side");
  });
});

describe("copy consumer names", () => {
  it("are stable, per table, and start with the replay consumer's name", () => {
    const a = copyConsumerName("job", "public.a");
    expect(a).toMatch(/^job_copy_[0-9a-f]{10}$/);
    expect(copyConsumerName("job", "public.a")).toBe(a);
    expect(copyConsumerName("job", "public.b")).not.toBe(a);
  });
});

describe("forceNewTick", () => {
  let db: TestDatabase;
  const lastTick = async () => Number((await db.query<{ t: string }>("select max(tick_id) as t from pgq.tick")).rows[0]!.t);

  beforeAll(async () => {
    db = await createTestDatabase("copy_units");
    await installPgq(db.pool);
    await createQueue(db.pool, "q");
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("makes a tick after the call and after the snapshot", async () => {
    const before = await lastTick();
    const { rows } = await db.query<{ s: string }>("select pg_current_snapshot()::text as s");
    const tick = await forceNewTick(db.pool, "q", { notOlderThan: rows[0]!.s });
    expect(tick).toBeGreaterThan(before);
    expect(tick).toBe(await lastTick());
  });

  it("waits while the ticker is paused, ignores an older tick that appears meanwhile, and times out when none comes", async () => {
    const { rows } = await db.query<{ s: string }>("select pg_current_snapshot()::text as s");
    await setQueueConfig(db.pool, "q", "ticker_paused", "true");
    const before = await lastTick();
    const waiting = forceNewTick(db.pool, "q", { notOlderThan: rows[0]!.s, timeoutMs: 20_000 });
    await sleep(300);
    // A tick with a snapshot older than the one asked for (as if a ticker had stalled before it): not taken.
    await db.query(
      `insert into pgq.tick (tick_queue, tick_id, tick_time, tick_snapshot, tick_event_seq)
       select queue_id, nextval(queue_tick_seq), now(), '1:1:'::pg_snapshot, 0 from pgq.queue where queue_name = 'q'`,
    );
    await sleep(300);
    await setQueueConfig(db.pool, "q", "ticker_paused", "false");
    const tick = await waiting;
    expect(tick).toBeGreaterThan(before + 1);

    await setQueueConfig(db.pool, "q", "ticker_paused", "true");
    await expect(forceNewTick(db.pool, "q", { timeoutMs: 500 })).rejects.toThrow(/no new tick/);
    const stop = new AbortController();
    const aborted = forceNewTick(db.pool, "q", { signal: stop.signal });
    stop.abort(new Error("stopping"));
    await expect(aborted).rejects.toThrow("stopping");
    await setQueueConfig(db.pool, "q", "ticker_paused", "false");
  });
});

describe("error kinds (shared by replay and the copy)", () => {
  it("data errors stop the table; connection, shutdown, deadlock, lock-timeout and privilege errors are retried", async () => {
    const { isDataError, isTransientError } = await import("../../shared/db/failure.ts");
    const { TableFailure } = await import("../../services/copy/errors.ts");
    expect(isDataError(new TableFailure("no such table on the provider"))).toBe(true);
    for (const code of ["42501", "28000"]) expect(isDataError(Object.assign(new Error(code), { code }))).toBe(false);
    for (const code of ["23505", "22P02", "42703", "P0001"]) expect(isDataError(Object.assign(new Error(code), { code }))).toBe(true);
    for (const code of ["08006", "40P01", "40001", "57P01", "53300", "55P03"]) expect(isTransientError(Object.assign(new Error(code), { code }))).toBe(true);
    expect(isDataError(Object.assign(new Error("x"), { name: "ApplyError" }))).toBe(true);
    expect(isTransientError(new Error("Connection terminated unexpectedly"))).toBe(true);
  });
});

describe("the lease's condition on merge_state", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase("copy_lease_sql");
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("is built from the machine's text forms", () => {
    expect(IN_COPY_STATE).toBe("(merge_state = 'in-copy' or merge_state = 'catching-up' or merge_state ~ '^wanna-sync:[0-9]+$' or merge_state ~ '^do-sync:[0-9]+$')");
    expect(mergeStateCondition([])).toBe("false");
    expect(() => mergeStateCondition(["none"])).toThrow("no text");
  });

  it("holds in Postgres for exactly the states a copy worker serves", async () => {
    const cases: Array<[string | null, boolean]> = SYNC_STATES.map((state) => [
      stateText({ state, context: { ...EMPTY_CONTEXT, tick: 42 } }),
      isCopyState(state),
    ]);
    cases.push(["?", false], ["wanna-sync:", false], ["in-copy-x", false], ["xdo-sync:5", false]);
    expect(cases.filter(([, copy]) => copy)).toHaveLength(4);
    for (const [text, copy] of cases) {
      const { rows } = await db.query<{ m: boolean | null }>(`select ${IN_COPY_STATE} as m from (values ($1::text)) v(merge_state)`, [text]);
      expect([text, rows[0]!.m === true]).toEqual([text, copy]);
    }
  });
});
