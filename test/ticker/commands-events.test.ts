/**
 * The pgqadm commands about batches and consumer positions against a live
 * ticker process: show-batch-events, del-event (a retry and a failed
 * event), reg-copy, reg-move; each in human form and with --json.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { expectFailed, expectJsonError, expectOk, pgqadmJson, runPgqadm, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let conf: string;
let ticker: ServiceProcess;
const Q = "events_q";

beforeAll(async () => {
  db = await createTestDatabase("ticker_cmd_events");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.register_consumer($1, 'c1')", [Q]);
  await db.query("select pgq.register_consumer($1, 'c2')", [Q]);
  conf = writeTickerConfig(makeTempDir("cmd-events"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: uniqueSubjectPrefix("cmdev"), jobName: "evjob" });
  ticker = startTicker(conf);
  await ticker.waitForLog("serving admin commands on NATS");
  await ticker.waitForLog("active: this instance ticks the database");
});

afterAll(async () => {
  await ticker?.kill("SIGKILL");
  await db?.drop();
});

const cli = (...words: string[]) => runPgqadm([conf, ...words]);
const json = <T = Record<string, unknown>>(...words: string[]) => pgqadmJson<T>(conf, ...words);

const position = async (consumer: string) =>
  (
    await db.query<{ last_tick: string }>(
      `select s.sub_last_tick as last_tick from pgq.subscription s
         join pgq.queue q on q.queue_id = s.sub_queue join pgq.consumer c on c.co_id = s.sub_consumer
        where q.queue_name = $1 and c.co_name = $2`,
      [Q, consumer],
    )
  ).rows.map((r) => Number(r.last_tick))[0];

const inTable = async (table: "retry_queue" | "failed_queue", id: number) =>
  Number((await db.query<{ n: string }>(`select count(*) as n from pgq.${table} where ev_id = $1`, [id])).rows[0]!.n);

let batchId: number;
let eventIds: number[];

describe("pgqadm batch and position commands against a live ticker", () => {
  it("show-batch-events: lists an open batch's events; an unknown batch → exit 1 not_found", async () => {
    const { rows } = await db.query<{ id: string }>(
      "select pgq.insert_event($1, 'order.created', 'id=' || i, 'x1-' || i, null, null, null) as id from generate_series(1, 3) i",
      [Q],
    );
    eventIds = rows.map((r) => Number(r.id));
    await db.query("select pgq.force_tick($1)", [Q]);
    // Open c1's batches (finishing the empty ones) until the one holding the three events.
    batchId = await waitFor(
      async () => {
        const b = (await db.query<{ b: string | null }>("select pgq.next_batch($1, 'c1') as b", [Q])).rows[0]!.b;
        if (b === null) return undefined;
        if ((await db.query("select 1 from pgq.get_batch_events($1)", [b])).rowCount! > 0) return Number(b);
        await db.query("select pgq.finish_batch($1)", [b]);
        return undefined;
      },
      { timeoutMs: 5_000, what: "c1's batch with the events" },
    );

    const [human, asJson, unknown, unknownJson] = await Promise.all([
      cli("show-batch-events", String(batchId)),
      json<{ batch: number; events: Array<{ id: number; type: string; data: string; extra1: string }> }>("show-batch-events", String(batchId)),
      cli("show-batch-events", "999999"),
      cli("--json", "show-batch-events", "999999"),
    ]);
    const out = expectOk(human);
    expect(out).toMatch(/^ev_id\s+ev_time\s+ev_txid\s+retry\s+type\s+data\s+extra1/);
    expect(out.trim().split("\n")).toHaveLength(4);
    for (const [i, id] of eventIds.entries()) expect(out).toMatch(new RegExp(`^${id}\\s.*order\\.created\\s+id=${i + 1}\\s+x1-${i + 1}`, "m"));

    expect(asJson.batch).toBe(batchId);
    expect(asJson.events.map((e) => [e.id, e.type, e.data, e.extra1])).toEqual(eventIds.map((id, i) => [id, "order.created", `id=${i + 1}`, `x1-${i + 1}`]));
    expect(expectFailed(unknown, "show-batch-events", "not_found")).toContain("batch not found");
    expectJsonError(unknownJson, "not_found");
  });

  it("del-event: deletes one event from a consumer's retry queue (human) and one from its failed queue (--json)", async () => {
    await db.query("select pgq.event_retry($1::bigint, $2::bigint, 3600)", [batchId, eventIds[0]]);
    await db.query("select pgq.event_failed($1::bigint, $2::bigint, 'broken')", [batchId, eventIds[1]]);
    await db.query("select pgq.finish_batch($1::bigint)", [batchId]);
    expect(await inTable("retry_queue", eventIds[0]!)).toBe(1);
    expect(await inTable("failed_queue", eventIds[1]!)).toBe(1);

    const [human, asJson] = await Promise.all([
      cli("del-event", Q, "c1", String(eventIds[0])),
      json("del-event", Q, "c1", String(eventIds[1])),
    ]);
    expect(expectOk(human)).toBe(`queue: ${Q}\nconsumer: c1\nevent: ${eventIds[0]}\ndeleted: 1\n`);
    expect(asJson).toEqual({ queue: Q, consumer: "c1", event: eventIds[1], deleted: 1 });
    expect(await inTable("retry_queue", eventIds[0]!)).toBe(0);
    expect(await inTable("failed_queue", eventIds[1]!)).toBe(0);

    const [gone, notInRetry, nobody] = await Promise.all([
      cli("del-event", Q, "c1", String(eventIds[1])),
      // An event still in the event table (not retried or failed) cannot be deleted one by one.
      cli("del-event", Q, "c1", String(eventIds[2])),
      cli("del-event", Q, "nobody", "1"),
    ]);
    expect(expectFailed(gone, "del-event", "not_found")).toBe("event not found");
    expect(expectFailed(notInRetry, "del-event", "not_found")).toBe("event not found");
    expectFailed(nobody, "del-event", "not_found");
    expect(Number((await db.query<{ n: string }>("select count(*) as n from pgq.event_template where ev_id = $1", [eventIds[2]])).rows[0]!.n)).toBe(1);
  });

  it("reg-copy and reg-move: a new consumer at another one's position; move unregisters the old one", async () => {
    const c1 = (await position("c1"))!;
    const c2 = (await position("c2"))!;
    expect(c1).toBeGreaterThan(c2); // c1 has finished batches, c2 none

    const [copyJson, copyHuman] = await Promise.all([json("reg-copy", Q, "c1", "c3"), cli("reg-copy", Q, "c1", "c6")]);
    expect(copyJson).toEqual({ queue: Q, from: "c1", to: "c3", tick: c1 });
    expect(expectOk(copyHuman)).toBe(`queue: ${Q}\nfrom: c1\nto: c6\ntick: ${c1}\n`);
    expect(await position("c3")).toBe(c1);
    expect(await position("c6")).toBe(c1);
    expect(await position("c1")).toBe(c1);

    const [moved, taken] = await Promise.all([cli("reg-move", Q, "c2", "c4"), cli("reg-copy", Q, "c1", "c3")]);
    expect(expectOk(moved)).toBe(`queue: ${Q}\nfrom: c2\nto: c4\ntick: ${c2}\n`);
    expect(expectFailed(taken, "reg-copy", "conflict")).toContain("consumer already registered: c3");
    expect(await position("c4")).toBe(c2);
    expect(await position("c2")).toBeUndefined();

    const [movedJson, fromGone, jsonMissing] = await Promise.all([
      json("reg-move", Q, "c4", "c5"),
      cli("reg-move", Q, "c2", "c7"),
      cli("--json", "reg-copy", "nosuch", "c1", "c8"),
    ]);
    expect(movedJson).toEqual({ queue: Q, from: "c4", to: "c5", tick: c2 });
    expectFailed(fromGone, "reg-move", "not_found");
    expectJsonError(jsonMissing, "not_found");
    expect(await position("c5")).toBe(c2);
    expect(await position("c4")).toBeUndefined();
    expect(await position("c7")).toBeUndefined();

    // The copy gets exactly what c1 had left: the next batch of c3 is c1's next batch.
    const ev = Number((await db.query<{ id: string }>("select pgq.insert_event($1, 't', 'after-copy') as id", [Q])).rows[0]!.id);
    await db.query("select pgq.force_tick($1)", [Q]);
    const seen = async (consumer: string) =>
      waitFor(
        async () => {
          // Drain every batch available now; true once the new event came.
          for (;;) {
            const b = (await db.query<{ b: string | null }>("select pgq.next_batch($1, $2) as b", [Q, consumer])).rows[0]!.b;
            if (b === null) return undefined;
            const ids = (await db.query<{ ev_id: string }>("select ev_id from pgq.get_batch_events($1)", [b])).rows.map((r) => Number(r.ev_id));
            await db.query("select pgq.finish_batch($1)", [b]);
            if (ids.includes(ev)) return true;
          }
        },
        { timeoutMs: 5_000, what: `${consumer} to receive event ${ev}` },
      );
    await Promise.all([seen("c1"), seen("c3"), seen("c5"), seen("c6")]);
  });
});
