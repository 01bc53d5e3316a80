/**
 * A Skytools user's set-up, in the original order and with Skytools-style
 * config files (libpq keyword connection strings, %(job_name)s in logfile
 * and pidfile, a dotted queue name): install PgQ with pgqadm, `provider
 * install`, start the ticker, `subscriber install`, `subscriber register`,
 * and only then start replay (and a copy worker), add a table and see its
 * rows copied and its changes replicated. Then the Skytools way of copying
 * a table again, plain SQL on merge_state, makes the table be copied again.
 * Every step runs as a user would: the launchers as OS processes.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueName, uniqueSubjectPrefix } from "../support/db.ts";
import { expectOk, PGQADM_LAUNCHER, runPgqadm, show } from "../support/pgqadm.ts";
import { makeTempDir, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitForProgress } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

useProcessCleanup();

const QUEUE = "londiste.replika";
let provider: TestDatabase;
let subscriber: TestDatabase;
let dir: string;
let tickerIni: string;
let londisteIni: string;
let jobName: string;

/** A database as Skytools configs wrote it: libpq keywords. */
function keywordDsn(db: TestDatabase): string {
  const u = new URL(db.url);
  return `dbname=${db.name} host=${u.hostname} port=${u.port || 5432} user=${decodeURIComponent(u.username) || "postgres"}`;
}

const pgqadm = (...args: string[]) => runPgqadm([tickerIni, ...args]);
const londiste = (...args: string[]) => runPgqadm([londisteIni, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });
/** A service as its own OS process (killed after the test by useProcessCleanup). */
const start = (label: string, launcher: string, args: string[]) => new ServiceProcess(label, process.execPath, [launcher, ...args]);

const rows = async (db: TestDatabase) => (await db.query("select id, v from data1 order by id")).rows;
const mergeState = async () =>
  ((await subscriber.query("select merge_state from londiste.subscriber_table where table_name = 'public.data1'")).rows[0] as
    | { merge_state: string | null }
    | undefined)?.merge_state;

/** Waits until data1 is `ok` and equal on both sides, while the copy or replay makes progress. */
async function waitInSync(what: string): Promise<void> {
  await waitForProgress({
    what,
    measure: async () => ({ state: await mergeState(), sub: await rows(subscriber), prov: await rows(provider) }),
    done: (v) => v.state === "ok" && JSON.stringify(v.sub) === JSON.stringify(v.prov),
  });
}

beforeAll(async () => {
  [provider, subscriber] = await Promise.all([createTestDatabase("lond_skyorder_p"), createTestDatabase("lond_skyorder_s")]);
  dir = makeTempDir("lond_skyorder");
  jobName = uniqueName("skyorder");
  const prefix = uniqueSubjectPrefix("skyorder");
  tickerIni = join(dir, "ticker.ini");
  writeFileSync(
    tickerIni,
    [
      "[pgqadm]",
      `job_name = ${jobName}_ticker`,
      `db = ${keywordDsn(provider)}`,
      "loop_delay = 0.1",
      "maint_delay_min = 5",
      `logfile = ${dir}/%(job_name)s.log`,
      `pidfile = ${dir}/%(job_name)s.pid`,
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${prefix}`,
      "",
    ].join("\n"),
  );
  londisteIni = join(dir, "replic.ini");
  writeFileSync(
    londisteIni,
    [
      "[londiste]",
      `job_name = ${jobName}`,
      `provider_db = ${keywordDsn(provider)}`,
      `subscriber_db = ${keywordDsn(subscriber)}`,
      "# the Skytools sample's queue name, dot and all",
      `pgq_queue_name = ${QUEUE}`,
      "loop_delay = 0.2",
      `logfile = ${dir}/%(job_name)s.log`,
      `pidfile = ${dir}/%(job_name)s.pid`,
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${prefix}`,
      "",
    ].join("\n"),
  );
  for (const db of [provider, subscriber]) await db.query("create table data1 (id int primary key, v text)");
  await provider.query("insert into data1 select g, 'before ' || g from generate_series(1, 50) g");
});

afterAll(async () => {
  await Promise.all([provider?.drop(), subscriber?.drop()]);
});

describe("the Skytools set-up order", () => {
  it("install PgQ, provider install, ticker, subscriber install, register, then replay: rows replicate; merge_state = NULL copies again", async () => {
    const direct = /running: (done directly on the databases|installed directly in the database)/;
    // 1. pgqadm.py ticker.ini install: no ticker runs yet
    expect(expectOk(await pgqadm("install"))).toMatch(direct);
    // 2. londiste.py replic.ini provider install
    const provided = expectOk(await londiste("provider", "install"));
    expect(provided).toContain(`queue: ${QUEUE}`);
    expect(provided).toMatch(direct);
    // 3. pgqadm.py -d ticker.ini ticker
    const ticker = start("skyorder-ticker", PGQADM_LAUNCHER, [tickerIni, "ticker"]);
    await ticker.waitForLog("active: this instance ticks the database");
    await ticker.waitForLog("serving admin commands on NATS");
    // short ticks keep the test quick (pgqadm config, over NATS now that the ticker runs)
    const configured = expectOk(await pgqadm("config", QUEUE, "ticker_max_lag=0.1"));
    expect(configured).not.toMatch(direct);
    // 4. and 5. londiste.py replic.ini subscriber install / register: still no replay
    expect(expectOk(await londiste("subscriber", "install"))).toMatch(direct);
    const registered = expectOk(await londiste("subscriber", "register"));
    expect(registered).toMatch(/registered: true/);
    expect(registered).toMatch(direct);
    // 6. londiste.py -d replic.ini replay (the copy runs as its own worker here)
    const replay = start("skyorder-replay", LONDISTE_LAUNCHER, [londisteIni, "replay"]);
    await replay.waitForLog("serving admin commands on NATS");
    start("skyorder-copy", LONDISTE_LAUNCHER, [londisteIni, "copy"]);
    // 7. add the table on both sides: over NATS now, the copy brings the rows
    expectOk(await londiste("provider", "add", "data1"));
    const added = await londiste("subscriber", "add", "data1");
    expect(added.code, show(added)).toBe(0);
    expect(added.stdout).not.toMatch(direct);
    await waitInSync("data1 copied and ok");
    await provider.query("insert into data1 values (51, 'after'); update data1 set v = 'changed' where id = 1; delete from data1 where id = 2");
    await waitInSync("the changes after the copy replicated");
    expect((await rows(subscriber)).length).toBe(50);

    // 8. `update londiste.subscriber_table set merge_state = null`: the table is copied again.
    // The subscriber drifts (a hand edit), then the Skytools way of copying the table again.
    await subscriber.query("delete from data1 where id <= 10");
    expect((await rows(subscriber)).length).toBe(41); // ids 1 and 3 to 10 gone
    const before = Number((await subscriber.query("select count(*) as n from londiste.sync_outbox where table_name = 'public.data1'")).rows[0].n);
    await subscriber.query("update londiste.subscriber_table set merge_state = null where table_name = 'public.data1'");
    await waitInSync("data1 copied again after merge_state = NULL");
    expect((await rows(subscriber)).length).toBe(50);
    const { rows: history } = await subscriber.query<{ to_state: string | null; type: string }>(
      "select to_state, event->>'type' as type from londiste.sync_outbox where table_name = 'public.data1' order by id offset $1",
      [before],
    );
    expect(history[0]).toEqual({ to_state: null, type: "RESYNC" });
    expect(history.map((h) => h.to_state)).toContain("in-copy");
    expect(history.at(-1)!.to_state).toBe("ok");
    // a write the machine has no move for is refused, naming the command to use
    await expect(subscriber.query("update londiste.subscriber_table set merge_state = 'in-copy' where table_name = 'public.data1'")).rejects.toThrow(
      /cannot set merge_state of public\.data1 from ok to in-copy by hand/,
    );
  });
});
