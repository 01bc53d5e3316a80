/**
 * The replay service as its own OS process (`londiste CONFIG replay`), fed
 * by a ticker process, under a steady write load on the provider: changes
 * reach the subscriber; `kill -9` of replay at random moments and restarts
 * still end with the subscriber equal to the provider (every change applied
 * exactly once: a lost or repeated one shows as a difference or a
 * duplicate-key stop); a second replay of the same job stands by.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { killProcesses, makeTempDir, SERVICE_START_MS, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitForProgress } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

useProcessCleanup();

const LONDISTE_SQL = fileURLToPath(new URL("../../sql/londiste/install.sql", import.meta.url));
const Q = "replika";
let provider: TestDatabase;
let subscriber: TestDatabase;
let conf: string;
let prefix: string;

beforeAll(async () => {
  provider = await createTestDatabase("lond_svc_prov");
  subscriber = await createTestDatabase("lond_svc_sub");
  await installPgq(provider.pool);
  await runSqlScript(provider.pool, LONDISTE_SQL);
  await runSqlScript(subscriber.pool, LONDISTE_SQL);
  for (const db of [provider, subscriber]) await db.query("create table data1 (id int primary key, v text not null, n int not null)");
  await provider.query("select pgq.create_queue($1)", [Q]);
  await provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [Q]);
  await provider.query("select londiste.provider_add_table($1, 'data1')", [Q]);
  await subscriber.query("select londiste.subscriber_add_table($1, 'data1')", [Q]);
  await subscriber.query("select londiste.subscriber_set_table_state($1, 'data1', null, 'ok')", [Q]);

  prefix = uniqueSubjectPrefix("lond_svc");
  const dir = makeTempDir("londiste");
  startTicker(writeTickerConfig(dir, { db: provider.url, natsUrl: natsUrl(), subjectPrefix: prefix, file: "ticker.ini" }), "ticker");
  conf = join(dir, "replay.ini");
  writeFileSync(
    conf,
    [
      "[londiste]",
      "job_name = svc_job",
      `provider_db = ${provider.url}`,
      `subscriber_db = ${subscriber.url}`,
      `pgq_queue_name = ${Q}`,
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${prefix}`,
      "loop_delay = 0.2",
      "",
    ].join("\n"),
  );
});

afterAll(async () => {
  await killProcesses();
  await provider?.drop();
  await subscriber?.drop();
});

const ACTIVE = "active: this instance replays the job";
const STANDBY = "standing by: another replay of this job is active";
const startReplay = (label = "replay") => new ServiceProcess(label, process.execPath, [LONDISTE_LAUNCHER, conf, "replay"]);
const dump = async (db: TestDatabase) => (await db.query("select id, v, n from data1 order by id")).rows;
const count = async (db: TestDatabase, where = "true") => (await db.query<{ n: number }>(`select count(*)::int as n from data1 where ${where}`)).rows[0]!.n;
const recordedTick = async () => (await subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", ["svc_job"])).rows[0]!.t;

describe("replay service", () => {
  // The waits go by progress; the limit only stops a hang.
  it("replicates a steady write load and survives kill -9 at random moments", { timeout: 600_000 }, async () => {
    let replay = startReplay();
    await replay.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
    // Replay registers its consumer after it logs "active"; the tables are ok without a copy, so a
    // change made before the registration would never reach the subscriber.
    await waitForProgress({
      what: "replay to register its consumer on the provider",
      measure: async () => (await provider.query("select 1 from pgq.get_consumer_info($1, 'svc_job')", [Q])).rowCount,
      done: (n) => n === 1,
    });

    // Load: inserts, updates (incl. key changes) and deletes in small transactions.
    let stopLoad = false;
    let nextId = 1;
    const writer = await provider.pool.connect();
    const load = (async () => {
      try {
        while (!stopLoad) {
          const id = nextId++;
          await writer.query("begin");
          await writer.query("insert into data1 values ($1::int, 'v' || $1::text, 0)", [id]);
          if (id % 3 === 0) await writer.query("update data1 set n = n + 1, v = v || '!' where id = $1::int", [id - 1]);
          if (id % 7 === 0) await writer.query("update data1 set id = id + 100000 where id = $1::int", [id - 2]);
          if (id % 11 === 0) await writer.query("delete from data1 where id = $1::int", [id - 5]);
          await writer.query("commit");
          await sleep(2);
        }
      } finally {
        writer.release();
      }
    })();

    try {
      // Progress is the subscriber's row count (the provider's is in the message of a stall).
      await waitForProgress({
        what: "the first 20 rows on the subscriber",
        measure: async () => ({ subscriber: await count(subscriber), provider: await count(provider) }),
        done: (c) => c.subscriber > 20,
        key: (c) => c.subscriber,
      });
      for (let round = 0; round < 3; round++) {
        await sleep(150 + Math.floor(Math.random() * 400));
        await replay.kill("SIGKILL");
        replay = startReplay(`replay-${round + 2}`);
        await replay.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
      }
    } finally {
      stopLoad = true;
      await load;
    }

    const expected = await dump(provider);
    expect(expected.length).toBeGreaterThan(50);
    const target = JSON.stringify(expected);
    // Replay catches up batch by batch: progress is the tick it recorded.
    await waitForProgress({
      what: "the subscriber to equal the provider",
      measure: async () => ({ tick: await recordedTick(), rows: JSON.stringify(await dump(subscriber)) }),
      done: (m) => m.rows === target,
      key: (m) => m.tick,
    });
    expect(replay.logs("replay failed; retrying")).toEqual([]);
  });

  it("a second replay of the same job stands by", { timeout: 600_000 }, async () => {
    const first = startReplay("replay-a");
    await first.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
    const second = startReplay("replay-b");
    await second.waitForLog(STANDBY, { timeoutMs: SERVICE_START_MS });
    await provider.query("insert into data1 values (999999, 'standby test', 0)");
    // Nothing moves on the subscriber until the row comes: the stall bound is the whole wait.
    await waitForProgress({
      what: "the row through the active replay",
      measure: () => count(subscriber, "id = 999999"),
      done: (n) => n === 1,
      stallMs: 60_000,
    });
    await first.kill("SIGKILL");
    await second.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
    const exit = await second.kill("SIGTERM");
    expect(exit.code).toBe(0);
  });
});
