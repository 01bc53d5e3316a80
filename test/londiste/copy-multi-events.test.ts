/**
 * State-change events on JetStream survive a NATS outage (docs/protocols.md,
 * "State-change events"):
 * the job runs against a private nats-server with JetStream (its own port
 * and store directory). A table is added and held in in-copy (copy gate)
 * while the first transitions are relayed; then NATS is stopped, the gate
 * opens and the table goes catching-up → wanna-sync → do-sync → ok with
 * nobody to relay to (the outbox rows stay unpublished); NATS starts again
 * on the same store and the replay service relays the backlog. Then:
 *  - the stream holds every transition of the table exactly once, in the
 *    order of londiste.sync_outbox, with Nats-Msg-Id <job>:<queue>:<id>;
 *  - an ordered JetStream consumer opened before the outage (a client
 *    that reconnects) received all of them, in order, no duplicates;
 *  - `londiste CONF watch --all --json` started after the outage prints all of
 *    them (from the oldest kept), in order;
 *  - rows relayed a second time (published_at cleared) are not stored
 *    again (de-duplication id).
 * The table itself ends ok, equal to the provider, exactly once.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StateChangeMessage } from "../../shared/londiste/state-events.ts";
import { ensureStateStream, stateStreamName, stateSubject } from "../../shared/londiste/state-events.ts";
import { connectNatsClient, startNatsServer } from "../support/nats.ts";
import { freePort } from "../support/local-postgres.ts";
import { expectOk } from "../support/pgqadm.ts";
import { killProcesses, makeTempDir, SERVICE_START_MS, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitForProgress } from "../support/wait.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";
import {
  ACTIVE,
  addTables,
  closeGate,
  createDataTables,
  expectReplicated,
  PROVIDER_SUPPORT_SQL,
  startCopy,
  startWriter,
  SUBSCRIBER_SUPPORT_SQL,
  waitAtGate,
  waitState,
} from "./crash-helpers.ts";

useProcessCleanup();

const NAME = "ev";
const TABLE = `public.${NAME}`;
const ROWS = 3000;

let job: LondisteJob;
let port: number;
let natsDir: string;
let nats: ServiceProcess;
let natsUrlPrivate: string;
let nc: NatsConnection | undefined;

interface OutboxRow {
  id: number;
  from: string | null;
  to: string | null;
  version: number;
  type: string;
  published: boolean;
}

async function outbox(): Promise<OutboxRow[]> {
  const { rows } = await job.subscriber.query<{
    id: string;
    from_state: string | null;
    to_state: string | null;
    version: string;
    type: string;
    published: boolean;
  }>(
    `select id, from_state, to_state, version, event->>'type' as type, published_at is not null as published
       from londiste.sync_outbox where queue_name = $1 and table_name = $2 order by id`,
    [job.queue, TABLE],
  );
  return rows.map((r) => ({ id: Number(r.id), from: r.from_state, to: r.to_state, version: Number(r.version), type: r.type, published: r.published }));
}

/** What a subscriber of the stream should see, per transition. */
const expected = (rows: OutboxRow[]) => rows.map((r) => ({ id: r.id, from: r.from, to: r.to, version: r.version, type: r.type }));
const seen = (m: StateChangeMessage) => ({ id: m.id, from: m.from, to: m.to, version: m.version, type: m.event.type as string });

/** `watch --all --json`: the whole kept history, then what comes. */
function startWatch(label: string): ServiceProcess {
  return job.start(label, "watch", ["--all", "--json"]);
}

/** The table's messages printed by a `watch --json` process. */
function watched(p: ServiceProcess): StateChangeMessage[] {
  return p.output
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as StateChangeMessage)
    .filter((m) => m.table === TABLE);
}

/** Waits until every outbox row of the table is published, while rows get published. */
const waitRelayed = (what: string) =>
  waitForProgress({ what, measure: async () => (await outbox()).map((r) => r.published), done: (p) => p.every(Boolean) });

/** Waits until `count()` reaches `n` (at least), while it grows. */
const waitCount = (what: string, count: () => number, n: number) =>
  waitForProgress({ what: `${what} (${n})`, measure: count, done: (c) => c >= n, intervalMs: 50 });

beforeAll(async () => {
  port = await freePort();
  natsDir = makeTempDir("events-nats");
  nats = await startNatsServer(port, natsDir, "nats-private");
  natsUrlPrivate = `nats://127.0.0.1:${port}`;
  job = await createLondisteJob({ label: "copy_events", extraConfig: ["copy_lease = 3"] });
  // The job (replay, copy, command line) talks to the private server; the ticker's notices go elsewhere (replay polls).
  const conf = readFileSync(job.conf, "utf8");
  writeFileSync(job.conf, conf.replace(/^nats_url = .*$/m, `nats_url = ${natsUrlPrivate}`));
  await job.provider.query(PROVIDER_SUPPORT_SQL);
  await job.subscriber.query(SUBSCRIBER_SUPPORT_SQL);
  await createDataTables(job, [NAME], ROWS);
  const replay = job.startReplay("events-replay");
  await replay.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
  await replay.waitForLog("serving admin commands on NATS", { timeoutMs: SERVICE_START_MS });
  await installJob(job);
  expectOk(await job.londiste("provider", "add", TABLE));
  const copy = startCopy(job, "events-copy");
  await copy.waitForLog("listening for copy requests", { timeoutMs: SERVICE_START_MS });
}, 600_000);

afterAll(async () => {
  await killProcesses();
  await nc?.close().catch(() => {});
  await job?.drop();
});

describe("state-change events across a NATS outage", () => {
  // The waits go by progress; the limit only stops a hang.
  it("every transition reaches the stream once and in order, also those made while NATS was down", { timeout: 900_000 }, async () => {
    const stream = stateStreamName(job.subjectPrefix, job.jobName);
    const subject = stateSubject(job.subjectPrefix, job.jobName, TABLE);
    nc = await connectNatsClient(natsUrlPrivate);
    // A subscriber from before the outage: an ordered consumer on the table's subject.
    const live: Array<{ seq: number; m: StateChangeMessage }> = [];
    // Replay creates the stream at its first publish; this consumer comes before it.
    await ensureStateStream(nc, job.subjectPrefix, job.jobName);
    const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject });
    const messages = await consumer.consume({
      callback: (msg) => {
        live.push({ seq: msg.seq, m: msg.json<StateChangeMessage>() });
      },
    });
    const watchBefore = startWatch("watch-before");

    const writer = startWriter(job.provider.url, NAME, ROWS);
    const gate = await closeGate(job, "copy", NAME);
    let relayedBefore = 0;
    try {
      await writer.waitCommits(20);
      await addTables(job, [NAME]);
      await waitAtGate(job, "copy", NAME);
      // (none) and in-copy are out; the rest happens while NATS is down.
      await waitRelayed("the first transitions to be relayed");
      const early = await outbox();
      expect(early.map((r) => r.to)).toEqual([null, "in-copy"]);
      relayedBefore = early.length;
      await waitCount("the live consumer to get the first transitions", () => live.length, early.length);
      await waitCount("the running watch to print the first transitions", () => watched(watchBefore).length, early.length);

      await nats.kill("SIGTERM");
      const downAt = Date.now();
      await gate.open();
      await waitState(job, TABLE, (s) => s === "ok", "ok while NATS is down");
      const down = (await outbox()).slice(early.length);
      expect(down.map((r) => r.to?.replace(/:\d+$/, ""))).toEqual(["catching-up", "wanna-sync", "do-sync", "ok"]);
      expect(down.filter((r) => r.published)).toEqual([]);

      // Down for a while (longer than a client's reconnect wait).
      await sleep(Math.max(0, 4000 - (Date.now() - downAt)));
      nats = await startNatsServer(port, natsDir, "nats-private-2");
      await waitRelayed("the backlog to be relayed");
    } finally {
      await gate.open();
      await writer.stop();
    }
    const all = await outbox();
    expect(all).toHaveLength(6);

    // The stream: each transition once, in order, with its de-duplication id.
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const stored: Array<{ m: StateChangeMessage; msgId: string | undefined }> = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const sm = await jsm.streams.getMessage(stream, { seq });
      if (sm?.subject === subject) stored.push({ m: sm.json<StateChangeMessage>(), msgId: sm.header?.get("Nats-Msg-Id") });
    }
    expect(stored.map((s) => seen(s.m))).toEqual(expected(all));
    expect(stored.map((s) => s.msgId)).toEqual(all.map((r) => `${job.jobName}:${job.queue}:${r.id}`));
    for (const s of stored) expect([s.m.job, s.m.queue, s.m.table]).toEqual([job.jobName, job.queue, TABLE]);

    // The consumer from before the outage got them all, once, in order.
    await waitCount("the live consumer to catch up", () => live.length, all.length);
    expect(live.map((x) => seen(x.m))).toEqual(expected(all));
    await messages.close();

    // watch --all --json after the outage prints the whole history of the table.
    const watchAfter = startWatch("watch-after");
    await waitCount("watch to print the transitions", () => watched(watchAfter).length, all.length);
    expect(watched(watchAfter).map(seen)).toEqual(expected(all));
    // A watch that was running when NATS went down waits the outage out and prints every transition, in order.
    await waitCount("the running watch to print every transition", () => watched(watchBefore).length, all.length);
    const before = watched(watchBefore).map(seen);
    expect(before).toEqual(expected(all));
    expect(watchBefore.running).toBe(true);
    console.info(
      `copy-multi-events: ${all.length} transitions, ${relayedBefore} before the outage; watch from before the outage ` +
        `${watchBefore.running ? "still running" : `exited ${JSON.stringify(watchBefore.exitInfo)}`} with ${before.length} of them; ` +
        `its other output: ${JSON.stringify(watchBefore.output.split("\n").filter((l) => l !== "" && !l.startsWith("{")))}`,
    );

    // Published again (as after a relay that died between the publish and marking the rows): stored once.
    await job.subscriber.query("update londiste.sync_outbox set published_at = null where table_name = $1", [TABLE]);
    await waitRelayed("the rows to be relayed again");
    const again = await jsm.streams.info(stream, { subjects_filter: subject });
    expect(again.state.subjects?.[subject]).toBe(all.length);
    expect(again.state.last_seq).toBe(info.state.last_seq);

    await expectReplicated(job, [NAME]);
  });
});
