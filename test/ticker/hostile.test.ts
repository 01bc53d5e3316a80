/**
 * Malformed and hostile requests sent straight to the ticker's command
 * subjects with a NATS client: each gets an error reply (bad_request) and
 * changes nothing; SQL-looking names are valid strings and are taken as
 * plain names. Afterwards PgQ is intact and the ticker still runs.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { connectNatsClient, rawRequest, requestAll } from "../support/nats.ts";
import { expectOk, pgqadmJson, runPgqadm, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let conf: string;
let prefix: string;
let ticker: ServiceProcess;
let nc: NatsConnection;
const JOB = "hostile";
const Q = "victim";

beforeAll(async () => {
  db = await createTestDatabase("ticker_hostile");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.register_consumer($1, 'c')", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.5 seconds')", [Q]);
  prefix = uniqueSubjectPrefix("hostile");
  conf = writeTickerConfig(makeTempDir("hostile"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: prefix, jobName: JOB });
  ticker = startTicker(conf);
  await ticker.waitForLog("serving admin commands on NATS");
  await ticker.waitForLog("active: this instance ticks the database");
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await ticker?.kill("SIGKILL");
  await nc?.close();
  await db?.drop();
});

const subject = (command: string) => `${prefix}.pgqadm.${JOB}.${command}`;

interface Reply {
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

const send = (command: string, payload: string | Uint8Array) => rawRequest(nc, subject(command), payload) as Promise<Reply>;

/** Everything a request could have changed. */
async function pgqState() {
  const q = await db.query(
    `select queue_id, queue_name, queue_ntables, queue_cur_table, queue_rotation_period::text, queue_ticker_max_count,
            queue_ticker_max_lag::text, queue_ticker_idle_period::text, queue_ticker_paused, queue_external_ticker
       from pgq.queue order by queue_id`,
  );
  const subs = await db.query(
    `select q.queue_name, c.co_name, s.sub_last_tick, s.sub_batch
       from pgq.subscription s join pgq.queue q on q.queue_id = s.sub_queue join pgq.consumer c on c.co_id = s.sub_consumer
      order by 1, 2`,
  );
  const objects = await db.query(
    `select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'pgq' order by 1`,
  );
  const counts = await db.query(
    `select (select count(*) from pgq.event_template) as events, (select count(*) from pgq.retry_queue) as retries,
            (select count(*) from pgq.failed_queue) as failed, (select count(*) from pgq.consumer) as consumers`,
  );
  return { queues: q.rows, subscriptions: subs.rows, objects: objects.rows, counts: counts.rows[0] };
}

const long = (n: number) => "a".repeat(n);

/** [command, payload, what the error message must say] */
const MALFORMED: Array<[string, string | Uint8Array, RegExp]> = [
  ["create", "not json", /not valid JSON/],
  ["create", "{'queue': 'x'}", /not valid JSON/],
  ["create", '{"queue": "x"', /not valid JSON/],
  ["create", new Uint8Array([0xff, 0xfe, 0x00, 0x7b]), /not valid JSON/],
  ["create", "[1, 2]", /must be a JSON object/],
  ["create", '"victim"', /must be a JSON object/],
  ["create", "null", /must be a JSON object/],
  ["create", "42", /must be a JSON object/],
  ["create", "", /queue is required/],
  ["create", "{}", /queue is required/],
  ["create", '{"queue": null}', /queue is required/],
  ["create", '{"queue": 5}', /queue must be a string/],
  ["create", '{"queue": ["victim"]}', /queue must be a string/],
  ["create", '{"queue": {"$ne": ""}}', /queue must be a string/],
  ["create", '{"queue": true}', /queue must be a string/],
  ["create", '{"queue": "x", "extra": 1}', /unknown field "extra"/],
  ["create", '{"queue": "x", "__proto__": {"admin": true}}', /unknown field "__proto__"/],
  ["create", '{"queue": "x", "constructor": {"prototype": {}}}', /unknown field "constructor"/],
  ["create", '{"queue": "x", "toString": "y"}', /unknown field "toString"/],
  ["register", '{"queue": "victim", "consumer": "c9", "hasOwnProperty": 1}', /unknown field "hasOwnProperty"/],
  ["create", JSON.stringify({ queue: long(201) }), /longer than 200 characters/],
  ["create", JSON.stringify({ queue: "x\u0000y" }), /NUL/],
  ["create", JSON.stringify({ queue: long(100 * 1024) }), /larger than 65536 bytes/],
  ["create", JSON.stringify({ queue: "x", [long(70_000)]: 1 }), /larger than 65536 bytes/],
  ["create", JSON.stringify({ queue: long(60_000) }), /longer than 200 characters/],
  ["create", "[".repeat(20_000) + "]".repeat(20_000), /must be a JSON object|not valid JSON/],
  ["drop", '{"queue": 1e3}', /queue must be a string/],
  ["register", '{"queue": "victim"}', /consumer is required/],
  ["register", '{"consumer": "c2"}', /queue is required/],
  ["unregister", '{"queue": "victim", "consumer": false}', /consumer must be a string/],
  ["config", '{"queue": "victim", "settings": "ticker_max_count=1"}', /settings must be an object/],
  ["config", '{"queue": "victim", "settings": ["ticker_max_count", "1"]}', /settings must be an object/],
  ["config", '{"queue": "victim", "settings": {"ticker_max_count": 1}}', /value must be a string/],
  ["config", JSON.stringify({ queue: Q, settings: { ticker_max_count: long(101) } }), /at most 100 characters/],
  ["config", '{"queue": "victim", "settings": {"queue_name": "pwned"}}', /unknown queue setting: queue_name/],
  ["config", '{"queue": "victim", "settings": {"ticker_max_count = 1, queue_name": "pwned"}}', /unknown queue setting/],
  ["config", '{"queue": "victim", "settings": {"ticker_max_count": "1; drop table pgq.queue"}}', /invalid input syntax for type integer/],
  ["config", `{"queue": "victim", "settings": {"ticker_max_lag": "1 second'); drop table pgq.queue; --"}}`, /invalid input syntax for type interval/],
  ["config", '{"queue": "victim", "settings": {"ticker_max_count": "99999999999"}}', /out of range/],
  // One bad setting rolls back the good one before it.
  ["config", '{"queue": "victim", "settings": {"ticker_max_count": "7", "ticker_paused": "maybe"}}', /boolean/],
  ["show-batch-events", '{"batch": "1"}', /batch must be an integer/],
  ["show-batch-events", '{"batch": 1.5}', /batch must be an integer/],
  ["show-batch-events", '{"batch": -1}', /batch must be at least 1/],
  ["show-batch-events", '{"batch": 1e300}', /batch must be an integer/],
  ["show-batch-events", '{"batch": 9007199254740993}', /batch must be an integer/],
  ["show-batch-events", '{"batch": "1 or 1=1"}', /batch must be an integer/],
  ["del-event", '{"queue": "victim", "consumer": "c", "event": "1; delete from pgq.retry_queue"}', /event must be an integer/],
  ["del-event", '{"queue": "victim", "consumer": "c"}', /event is required/],
  ["queue-rename", '{"old": "victim"}', /new is required/],
  ["queue-rename", '{"old": "victim", "new": ""}', /Invalid NULL value/],
  ["reg-copy", '{"queue": "victim", "from": "c", "to": 5}', /to must be a string/],
  ["reg-move", '{"queue": "victim", "from": "c"}', /to is required/],
  ["status", '{"verbose": true}', /unknown field "verbose"/],
  ["install", '{"force": true}', /unknown field "force"/],
  ["ping", "[]", /must be a JSON object/],
  ["stop", '{"instance": 5}', /instance must be a string/],
  ["stop", "[]", /must be a JSON object/],
  ["reload", '{"instance": {}}', /instance must be a string/],
];

describe("hostile requests on the command subjects", () => {
  it("malformed requests (not JSON, not an object, wrong types, missing or unknown fields, huge payloads) get bad_request and change nothing", async () => {
    const before = await pgqState();
    const replies = await Promise.all(MALFORMED.map(([command, payload]) => send(command, payload)));
    for (const [i, reply] of replies.entries()) {
      const [command, payload, message] = MALFORMED[i]!;
      const what = `${command} ${typeof payload === "string" ? payload.slice(0, 80) : "<bytes>"} → ${JSON.stringify(reply).slice(0, 300)}`;
      expect(reply.result, what).toBeUndefined();
      expect(reply.error?.code, what).toBe("bad_request");
      expect(reply.error?.message, what).toMatch(message);
      expect(reply.error!.message.length, what).toBeLessThan(2_000);
    }
    expect(await pgqState()).toEqual(before);
    expect(ticker.running).toBe(true);

    // The service is still there and well: ping, status, ticks.
    expect(await send("ping", "{}")).toMatchObject({ result: { state: "active" } });
    const status = await send("status", "");
    expect((status.result!.queues as Array<{ queue: string }>).map((q) => q.queue)).toEqual([Q]);
    const last = await lastTickId(db, Q);
    await db.query("select pgq.insert_event($1, 'x', 'y')", [Q]);
    await waitForTickAfter(db, Q, last);
  });

  it("stop/reload meant for another instance are ignored; an unknown command gets unknown_command", async () => {
    expect(await requestAll(nc, subject("stop"), JSON.stringify({ instance: "elsewhere-1" }), 500)).toEqual([]);
    expect(await requestAll(nc, subject("reload"), JSON.stringify({ instance: "elsewhere-1" }), 300)).toEqual([]);
    expect(await rawRequest(nc, subject("drop_everything"), "{}", 2_000)).toMatchObject({ error: { code: "unknown_command" } });
    await sleep(300);
    expect(ticker.running).toBe(true);
    expect(ticker.logs("stopping")).toEqual([]);
    expect(await send("ping", "{}")).toMatchObject({ result: { state: "active" } });
  });

  it("SQL in names is just part of the name: queues and consumers get exactly those names; PgQ stays intact", async () => {
    const names = [
      "x'); drop table pgq.queue; --",
      '"; drop schema pgq cascade; --',
      "q$$; select pg_terminate_backend(pg_backend_pid()); $$",
      "ünï.cødé ✓ *>",
    ];
    const consumer = "c'; delete from pgq.subscription; --";
    const before = await pgqState();

    const created = await Promise.all(names.map((queue) => send("create", JSON.stringify({ queue }))));
    expect(created).toEqual(names.map((queue) => ({ result: { queue, created: true } })));
    // Through the command line too: argv is passed as is.
    const viaCli = await runPgqadm([conf, "--json", "register", names[0]!, consumer]);
    expect(JSON.parse(expectOk(viaCli))).toEqual({ queue: names[0], consumer, registered: true });
    expect(await send("register", JSON.stringify({ queue: names[1], consumer }))).toEqual({ result: { queue: names[1], consumer, registered: true } });
    expect(await send("config", JSON.stringify({ queue: names[2], settings: { ticker_max_count: "7" } }))).toMatchObject({
      result: { queue: names[2], ticker_max_count: 7 },
    });

    const queues = (await db.query<{ queue_name: string }>("select queue_name from pgq.queue order by queue_id")).rows.map((r) => r.queue_name);
    expect(queues[0]).toBe(Q);
    expect(queues.slice(1).sort()).toEqual([...names].sort());
    expect(await db.query("select 1 from pg_namespace where nspname = 'pgq'").then((r) => r.rowCount)).toBe(1);
    const status = await pgqadmJson<{ queues: Array<{ queue: string }>; consumers: Array<{ queue: string; consumer: string }> }>(conf, "status");
    expect(status.queues.map((q) => q.queue).sort()).toEqual([Q, ...names].sort());
    expect(status.consumers.filter((c) => c.consumer === consumer).map((c) => c.queue).sort()).toEqual([names[0], names[1]].sort());

    // The ticker ticks them like any queue.
    for (const queue of names) await waitForTickAfter(db, queue, 1, 5_000);

    // And they go away by name, leaving PgQ as it was.
    expect(await send("unregister", JSON.stringify({ queue: names[0], consumer }))).toMatchObject({ result: { unregistered: true } });
    expect(await send("unregister", JSON.stringify({ queue: names[1], consumer }))).toMatchObject({ result: { unregistered: true } });
    const dropped = await Promise.all(names.map((queue) => send("drop", JSON.stringify({ queue }))));
    expect(dropped).toEqual(names.map((queue) => ({ result: { queue, dropped: true } })));
    await db.query("delete from pgq.consumer where co_name = $1", [consumer]);
    // Same queues, subscriptions, consumers, tables and sequences (the dropped queues' own are gone).
    expect(await pgqState()).toEqual(before);
    expect(ticker.running).toBe(true);
    expect(ticker.logs("ticker database error")).toEqual([]);
    expect(await send("ping", "{}")).toMatchObject({ result: { state: "active" } });
  });
});
