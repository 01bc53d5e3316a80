/**
 * Errors in SQL and the error texts of the public API (docs/pgq.md, "The
 * SQL API" and "PgQ from TypeScript"): each raises the Skytools 2 text, and
 * the TypeScript API turns it into a PgqError with a stable kind.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  PgqError,
  batchEvents,
  createQueue,
  dropQueue,
  failEvent,
  finishBatch,
  forceTick,
  getBatchEvents,
  insertEvent,
  installPgq,
  nextBatch,
  pgqCall,
  registerConsumer,
  retryEvent,
  setQueueConfig,
  tickNow,
  tickQueue,
  unregisterConsumer,
  type PgqErrorKind,
  type PgqEvent,
} from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { num } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("pgq-errors");
  await installPgq(db.pool);
  await createQueue(db.pool, "myqueue");
  await registerConsumer(db.pool, "myqueue", "consumer");
});
afterAll(async () => {
  await db?.drop();
});

/** Expects `promise` to reject with a PgqError of this kind and exact message. */
async function expectPgqError(promise: Promise<unknown>, kind: PgqErrorKind, message: string | RegExp): Promise<PgqError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PgqError);
  const pgqError = error as PgqError;
  expect({ kind: pgqError.kind, name: pgqError.name }).toEqual({ kind, name: "PgqError" });
  if (typeof message === "string") expect(pgqError.message).toBe(message);
  else expect(pgqError.message).toMatch(message);
  return pgqError;
}

const sql = (text: string, params: unknown[] = []) => pgqCall(db.pool.query(text, params));

describe("errors in SQL", () => {
  it("drop_queue with a consumer attached fails and leaves the queue", async () => {
    await expect(db.pool.query("select pgq.drop_queue('myqueue')")).rejects.toThrow(
      /^cannot drop queue, consumers still attached$/,
    );
    expect(await num(db.pool, "select count(*) from pgq.queue where queue_name = 'myqueue'")).toBe(1);
  });

  it("unregistering an unknown consumer fails with 'consumer not registered on queue'", async () => {
    await expect(db.pool.query("select pgq.unregister_consumer('myqueue', 'x')")).rejects.toThrow(
      /^consumer not registered on queue$/,
    );
  });

  it("next_batch for an unknown consumer fails with 'Not subscriber to queue: myqueue/x'", async () => {
    await expect(db.pool.query("select pgq.next_batch('myqueue', 'x')")).rejects.toThrow(
      /^Not subscriber to queue: myqueue\/x$/,
    );
  });
});

describe("PgqError kinds through the TypeScript API", () => {
  it("queue_has_consumers: dropQueue with a consumer attached", async () => {
    const error = await expectPgqError(
      dropQueue(db.pool, "myqueue"),
      "queue_has_consumers",
      "cannot drop queue, consumers still attached",
    );
    expect(error.sqlState).toBe("P0001");
    expect(error.where).toMatch(/drop_queue/);
    expect(error.cause).toBeInstanceOf(Error);
  });

  it("consumer_not_registered: unregister, nextBatch, retryEvent and the failed-queue functions for an unknown consumer", async () => {
    await expectPgqError(unregisterConsumer(db.pool, "myqueue", "x"), "consumer_not_registered", "consumer not registered on queue");
    await expectPgqError(nextBatch(db.pool, "myqueue", "x"), "consumer_not_registered", "Not subscriber to queue: myqueue/x");
    const event: PgqEvent = {
      id: 1,
      time: new Date(),
      txid: 1,
      retry: null,
      type: "t",
      data: null,
      extra1: null,
      extra2: null,
      extra3: null,
      extra4: null,
    };
    await expectPgqError(retryEvent(db.pool, "myqueue", "x", event, 0), "consumer_not_registered", "consumer not registered");
    await expectPgqError(
      sql("select pgq.failed_event_count('myqueue', 'x')"),
      "consumer_not_registered",
      "no such queue/consumer",
    );
    await expectPgqError(
      sql("select * from pgq.failed_event_list('myqueue', 'x')"),
      "consumer_not_registered",
      "no such queue/consumer",
    );
  });

  it("queue_not_found: every way of naming a queue that does not exist", async () => {
    await expectPgqError(dropQueue(db.pool, "nope"), "queue_not_found", "No such event queue");
    await expectPgqError(registerConsumer(db.pool, "nope", "c"), "queue_not_found", "Event queue not created yet");
    await expectPgqError(insertEvent(db.pool, "nope", { type: "t", data: null }), "queue_not_found", "No such queue");
    await expectPgqError(tickQueue(db.pool, "nope"), "queue_not_found", "no such queue");
    await expectPgqError(forceTick(db.pool, "nope"), "queue_not_found", "queue not found or ticks not allowed");
    await expectPgqError(setQueueConfig(db.pool, "nope", "ticker_max_count", "1"), "queue_not_found", "No such event queue");
    await expectPgqError(sql("select pgq.current_event_table('nope')"), "queue_not_found", "Event queue not found");
    await expectPgqError(sql("select pgq.ticker('myqueue', 77)"), "queue_not_found", "queue not found");
  });

  it("queue_external_ticker: ticking an external-ticker queue", async () => {
    await createQueue(db.pool, "extqueue");
    await setQueueConfig(db.pool, "extqueue", "external_ticker", "true");
    await expectPgqError(tickQueue(db.pool, "extqueue"), "queue_external_ticker", "This queue has external tick source.");
    await expectPgqError(tickNow(db.pool, "extqueue"), "queue_external_ticker", "This queue has external tick source.");
    await expectPgqError(forceTick(db.pool, "extqueue"), "queue_not_found", "queue not found or ticks not allowed");
  });

  it("tick_not_found and batch_open: repositioning a consumer", async () => {
    await expectPgqError(
      registerConsumer(db.pool, "myqueue", "consumer", 999),
      "tick_not_found",
      "cannot reposition, tick not found: 999",
    );
    await tickNow(db.pool, "myqueue");
    const batch = (await nextBatch(db.pool, "myqueue", "consumer"))!;
    await expectPgqError(
      registerConsumer(db.pool, "myqueue", "consumer", 1),
      "batch_open",
      "reposition while active not allowed",
    );
    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
    // once the batch is closed the reposition works (and reports an existing consumer)
    expect(await registerConsumer(db.pool, "myqueue", "consumer", 1)).toBe(false);
    expect(await num(db.pool, "select last_tick from pgq.get_consumer_info('myqueue', 'consumer')")).toBe(1);
  });

  it("no_ticks: registering on a queue that lost all its ticks", async () => {
    await createQueue(db.pool, "noticks");
    await db.pool.query(
      "delete from pgq.tick where tick_queue = (select queue_id from pgq.queue where queue_name = 'noticks')",
    );
    await expectPgqError(
      registerConsumer(db.pool, "noticks", "c"),
      "no_ticks",
      "No ticks for this queue.  Please run ticker on database.",
    );
  });

  it("batch_not_found and event_not_found: reading and tagging", async () => {
    await expectPgqError(getBatchEvents(db.pool, 999_999), "batch_not_found", "batch not found");
    const client = await db.pool.connect();
    try {
      const drain = async () => {
        for await (const ev of batchEvents(client, 999_999)) void ev;
      };
      await expectPgqError(drain(), "batch_not_found", "batch not found");
    } finally {
      client.release();
    }
    await expectPgqError(failEvent(db.pool, 999_999, 1, "x"), "batch_not_found", "batch not found");

    await insertEvent(db.pool, "myqueue", { type: "t", data: null });
    await tickNow(db.pool, "myqueue");
    const batch = (await nextBatch(db.pool, "myqueue", "consumer"))!;
    await expectPgqError(failEvent(db.pool, batch.batchId, 999_999, "x"), "event_not_found", "event not found");
    await expectPgqError(sql("select pgq.event_retry($1, 999999, 0)", [batch.batchId]), "event_not_found", "event not found");
    await expectPgqError(
      sql("select pgq.failed_event_delete('myqueue', 'consumer', 0)"),
      "event_not_found",
      "event not found",
    );
    expect(await finishBatch(db.pool, batch.batchId)).toBe(true);
  });

  it("invalid_argument: NULL queue name, unknown setting", async () => {
    await expectPgqError(sql("select pgq.create_queue(null)"), "invalid_argument", "Invalid NULL value");
    await expectPgqError(sql("select pgq.drop_queue(null)"), "invalid_argument", "Invalid NULL value");
    await expectPgqError(
      setQueueConfig(db.pool, "myqueue", "bogus", "1"),
      "invalid_argument",
      "unknown queue setting: bogus",
    );
  });

  it("other database errors become kind 'database'; non-database errors pass through unchanged", async () => {
    const error = await expectPgqError(sql("select pgq.no_such_function()"), "database", /does not exist/);
    expect(error.sqlState).toBe("42883");
    const plain = new TypeError("not from the database");
    await expect(pgqCall(Promise.reject(plain))).rejects.toBe(plain);
  });
});
