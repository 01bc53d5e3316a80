/**
 * Rough edges a new user hits, each tried as the user does it: the ticker
 * and replay run as their own processes, every step is a `londiste` or
 * `pgqadm` command (or a raw NATS request). Covers the messages of
 * `subscriber add` / `add-seq` / `fkeys` and of names that need quoting,
 * the `--expect-sync` row count check, `watch` (new changes by default,
 * `--since`, `--all`, `watch | head`), requests for unknown commands and
 * unknown instances, `status` once the ticker died, and the job's
 * JetStream stream: none for a replay whose databases do not exist, gone
 * after `subscriber uninstall`.
 */
import { writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateStreamName, type StateChangeMessage } from "../../shared/londiste/state-events.ts";
import { natsUrl, urlForDatabase } from "../support/db.ts";
import { connectNatsClient, rawRequest, requestAll } from "../support/nats.ts";
import { type CliResult, expectOk, runPgqadm, show } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let replay: ServiceProcess;
let nc: NatsConnection;

beforeAll(async () => {
  job = await createLondisteJob({ label: "rough" });
  replay = job.startReplay();
  await replay.waitForLog("serving admin commands on NATS");
  await installJob(job);
  nc = await connectNatsClient(natsUrl());
}, 120_000);

afterAll(async () => {
  await nc?.close();
  await job?.drop();
});

const both = async (sql: string) => {
  await job.provider.query(sql);
  await job.subscriber.query(sql);
};

function expectExit(r: CliResult, code: number): string {
  expect(r.code, show(r)).toBe(code);
  return r.stdout + r.stderr;
}

const count = (text: string, part: string) => text.split(part).length - 1;

describe("messages of the subscriber commands", () => {
  it("a second add says only 'already registered'; a refused table gets the --force hint once", async () => {
    await both("create table m_dup (id int primary key); create table m_trig (id int primary key)");
    await job.subscriber.query(`
      create function m_audit() returns trigger language plpgsql as $$ begin return new; end $$;
      create trigger audit_dup after insert on m_dup for each row execute function m_audit();
      create trigger audit_trig after insert on m_trig for each row execute function m_audit();`);
    expectOk(await job.londiste("provider", "add", "m_dup", "m_trig"));
    expectExit(await job.londiste("subscriber", "add", "--force", "m_dup"), 0);

    const again = expectExit(await job.londiste("subscriber", "add", "m_dup"), 1);
    expect(again).toBe("m_dup: FAILED: already registered\n");
    const refused = expectExit(await job.londiste("subscriber", "add", "m_trig"), 1);
    expect(refused).toContain("the subscriber table has triggers: audit_trig");
    expect(count(refused, "--force adds it anyway")).toBe(1);
  });

  it("add-seq given a table says it is a table; a name with a space hints at quoting", async () => {
    await job.provider.query("create sequence m_seq");
    const seq = expectExit(await job.londiste("subscriber", "add-seq", "m_dup", "m_seq"), 1);
    expect(seq).toContain("m_dup: FAILED: public.m_dup is a table, not a sequence");
    expect(seq).toMatch(/m_seq: FAILED: not registered on the provider: run "[^"]* provider add-seq public\.m_seq" first/);

    const [sub, prov] = await Promise.all([job.londiste("subscriber", "add", "my table"), job.londiste("provider", "add", "public.my table")]);
    expect(expectExit(sub, 1)).toContain(`my table: FAILED: bad name: my table (a name with a space needs SQL double quotes, inside shell quotes: '"my table"')`);
    expect(expectExit(prov, 1)).toContain(`(a name with a space needs SQL double quotes, inside shell quotes: 'public."my table"')`);
  });

  it("fkeys prints REFERENCES with the schema-qualified table", async () => {
    await both(`create table fk_parent (id int primary key);
                create table fk_child (id int primary key, parent_id int references fk_parent (id))`);
    expectOk(await job.londiste("provider", "add", "fk_parent", "fk_child"));
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "fk_parent", "fk_child"));
    const fkeys = expectOk(await job.londiste("subscriber", "fkeys"));
    expect(fkeys).toContain(
      'alter table only public.fk_child add constraint "fk_child_parent_id_fkey" FOREIGN KEY (parent_id) REFERENCES public.fk_parent(id);',
    );
  });
});

describe("--expect-sync", () => {
  it("is refused when the row counts differ, taken on trust with --force, and says what it checked", async () => {
    await both("create table es_diff (id int primary key); create table es_same (id int primary key)");
    await job.provider.query("insert into es_diff values (1), (2), (3); insert into es_same values (1), (2)");
    await job.subscriber.query("insert into es_diff values (1), (2); insert into es_same values (1), (2)");
    expectOk(await job.londiste("provider", "add", "es_diff", "es_same"));

    const refused = expectExit(await job.londiste("subscriber", "add", "--expect-sync", "es_diff"), 1);
    expect(refused).toContain("es_diff: FAILED: --expect-sync: the provider has 3 rows, the subscriber 2: the tables are not in sync");
    const tables = await job.londisteJson<Array<{ table: string }>>("subscriber", "tables");
    expect(tables.map((t) => t.table)).not.toContain("public.es_diff");

    const same = expectOk(await job.londiste("subscriber", "add", "--expect-sync", "es_same"));
    expect(same).toContain("es_same: added, state ok (checked: both sides have 2 rows;");
    const forced = expectOk(await job.londiste("subscriber", "add", "--expect-sync", "--force", "es_diff"));
    expect(forced).toContain("es_diff: added, state ok (--expect-sync taken on trust: --force skips the row count check)");
  });
});

/** The state changes a `watch --json` process printed. */
const changes = (p: ServiceProcess) => p.lines.filter((l) => "table" in l && "event" in l) as unknown as StateChangeMessage[];
const tablesIn = (p: ServiceProcess) => new Set(changes(p).map((c) => c.table));

/** Waits until every state change of the job so far is on the stream. */
async function waitRelayed(what: string): Promise<void> {
  await waitFor(
    async () => (await job.subscriber.query("select 1 from londiste.sync_outbox where published_at is null")).rows.length === 0,
    { timeoutMs: 60_000, what },
  );
}

describe("watch", () => {
  it("shows new changes by default, history with --since TIME or --all; `watch | head` exits quietly", async () => {
    await both("create table w_old (id int primary key); create table w_new (id int primary key)");
    expectOk(await job.londiste("provider", "add", "w_old", "w_new"));
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "w_old"));
    await waitRelayed("w_old's changes on the stream");
    const between = new Date();

    const live = job.start("watch-new", "watch", ["--json"]);
    await waitFor(() => live.output.includes("from now on"), { timeoutMs: 60_000, what: "watch to start" });
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "w_new"));
    await waitFor(() => tablesIn(live).has("public.w_new"), { timeoutMs: 60_000, what: "watch to show w_new" });
    expect([...tablesIn(live)]).toEqual(["public.w_new"]);

    const since = job.start("watch-since", "watch", ["--json", "--since", between.toISOString()]);
    const all = job.start("watch-all", "watch", ["--all", "--json"]);
    await waitFor(() => tablesIn(since).has("public.w_new"), { timeoutMs: 60_000, what: "watch --since to show w_new" });
    await waitFor(() => tablesIn(all).has("public.w_new"), { timeoutMs: 60_000, what: "watch --all to show w_new" });
    // In stream order, so w_old's changes would have come first.
    expect(tablesIn(since).has("public.w_old")).toBe(false);
    expect(tablesIn(all).has("public.w_old")).toBe(true);
    expect(since.output).toContain(`since ${between.toISOString()}`);

    const bad = expectExit(await job.londiste("watch", "--since", "yesterday-ish"), 2);
    expect(bad).toContain('--since needs a date/time (2026-11-27T10:00:00Z) or an age (30s, 10m, 2h, 1d), got "yesterday-ish"');

    // `watch --all | head -n 1`: once head is gone, the next change ends watch, quietly and with exit 0.
    const err = join(job.dir, "watch-head.err");
    const rc = join(job.dir, "watch-head.rc");
    const pipeline = new ServiceProcess("watch-head", "sh", ["-c", '{ "$NODE" "$LAUNCHER" "$CONF" watch --all 2>"$ERR"; echo $? >"$RC"; } | head -n 1'], {
      NODE: process.execPath,
      LAUNCHER: LONDISTE_LAUNCHER,
      CONF: job.conf,
      ERR: err,
      RC: rc,
    });
    await waitFor(() => pipeline.output.includes("  public."), { timeoutMs: 60_000, what: "head to print the first change" });
    let flip = 0;
    await waitFor(
      async () => {
        if (!pipeline.running) return true;
        // Changes for watch to write into the closed pipe.
        const command = flip++ % 2 === 0 ? "subscriber.remove" : "subscriber.add";
        await rawRequest(nc, `${job.subjectPrefix}.londiste.${job.jobName}.${command}`, JSON.stringify({ tables: ["public.w_new"], ...(command === "subscriber.add" ? { expect_sync: true } : {}) }));
        return false;
      },
      { timeoutMs: 120_000, intervalMs: 1000, what: "watch | head to end" },
    );
    const stderr = await readFile(err, "utf8");
    expect(stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect((await readFile(rc, "utf8")).trim(), stderr).toBe("0");
    expect(pipeline.output.trim().split("\n")).toHaveLength(1);
  });
});

describe("requests nobody can serve", () => {
  it("an unknown command subject gets unknown_command; known subjects of this and other services are not taken", async () => {
    const londiste = `${job.subjectPrefix}.londiste.${job.jobName}`;
    const ticker = `${job.subjectPrefix}.pgqadm.ticktest`;
    const [lUnknown, tUnknown, lStatus] = await Promise.all([
      rawRequest(nc, `${londiste}.frobnicate`, "{}"),
      rawRequest(nc, `${ticker}.subscriber.frobnicate`, "{}"),
      rawRequest(nc, `${londiste}.status`, "{}"),
    ]);
    expect(lUnknown).toEqual({ error: { code: "unknown_command", message: expect.stringContaining(`no command "frobnicate" on ${londiste}`) } });
    expect(tUnknown).toEqual({ error: { code: "unknown_command", message: expect.stringContaining('no command "subscriber.frobnicate"') } });
    expect(lStatus).toMatchObject({ result: { job: job.jobName } });
    // compare belongs to the repair workers, none of which runs: still "no responders", and the tool says whom to start.
    const compare = await job.londiste("compare");
    expect(expectExit(compare, 3)).toContain(`no service is listening on ${londiste}.compare: start a repair worker`);
    // $SRV lists the replay's endpoints only, no catch-all.
    const infos = (await requestAll(nc, "$SRV.INFO.londiste-replay", "{}", 2_000)) as Array<{ metadata: Record<string, string>; endpoints: Array<{ subject: string }> }>;
    const mine = infos.filter((i) => i.metadata.job === job.jobName);
    expect(mine.length).toBeGreaterThan(0);
    for (const info of mine) {
      expect(info.endpoints.map((e) => e.subject)).toContain(`${londiste}.status`);
      expect(info.endpoints.filter((e) => e.subject.includes(">") || e.subject.includes("*"))).toEqual([]);
    }
  });

  it("stop/reload of an instance that does not exist says so and stops nothing", async () => {
    const tickerConf = join(job.dir, "ticker.ini");
    const [pStop, lReload] = await Promise.all([
      runPgqadm([tickerConf, "stop", "NO-SUCH-INSTANCE"]),
      job.londiste("reload", "NO-SUCH-INSTANCE"),
    ]);
    const p = expectExit(pStop, 1);
    expect(p).toMatch(/^pgqadm: stop failed: no such instance "NO-SUCH-INSTANCE"; running: \S+-\d+$/m);
    expect(p).not.toContain("start the ticker");
    const l = expectExit(lReload, 1);
    expect(l).toMatch(/^londiste: reload failed: no such instance "NO-SUCH-INSTANCE"; running: \S+-\d+ \(replay\)$/m);
    expect(job.ticker.running).toBe(true);
    expect(replay.running).toBe(true);
  });
});

describe("status with the ticker dead", () => {
  it("says 'no tick for N s: is the ticker running?'", async () => {
    await job.provider.query("select pgq.set_queue_config($1, 'ticker_idle_period', '1 second')", [job.queue]);
    const alive = await job.londisteJson<{ ticker_warning: string | null; ticker_lag_s: number }>("status");
    expect(alive.ticker_warning, JSON.stringify(alive)).toBeNull();
    await job.ticker.kill("SIGKILL");
    const stale = await waitFor(
      async () => {
        const s = await job.londisteJson<{ ticker_warning: string | null }>("status");
        return s.ticker_warning ?? undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000, what: "status to warn about the ticker" },
    );
    expect(stale).toMatch(/^no tick for \d+ s: is the ticker running\?$/);
    expect(expectOk(await job.londiste("status"))).toMatch(/^ {2}WARNING: no tick for \d+ s: is the ticker running\?$/m);
  });
});

describe("the job's JetStream stream", () => {
  it("a replay whose databases do not exist creates none", async () => {
    const ghostJob = `${job.jobName}_ghost`;
    const conf = join(job.dir, "ghost.ini");
    const missing = urlForDatabase(`${job.subscriber.name}_missing`);
    writeFileSync(
      conf,
      ["[londiste]", `job_name = ${ghostJob}`, `provider_db = ${missing}`, `subscriber_db = ${missing}`, `pgq_queue_name = ${job.queue}`,
        `nats_url = ${natsUrl()}`, `subject_prefix = ${job.subjectPrefix}`, "loop_delay = 0.2", ""].join("\n"),
    );
    const ghost = new ServiceProcess("ghost-replay", process.execPath, [LONDISTE_LAUNCHER, conf, "replay"]);
    await ghost.waitForLog("serving admin commands on NATS");
    // Two failed rounds: the relay (every second) had its chances too.
    await waitFor(() => ghost.logs("replay failed; retrying").length >= 2, { timeoutMs: 60_000, what: "two failed replay rounds" });
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.info(stateStreamName(job.subjectPrefix, ghostJob))).rejects.toThrow(/stream not found/);
    await ghost.kill("SIGKILL");
  });

  it("subscriber uninstall refuses while tables remain, then removes the stream and the outbox", async () => {
    const jsm = await jetstreamManager(nc);
    const stream = stateStreamName(job.subjectPrefix, job.jobName);
    expect((await jsm.streams.info(stream)).state.messages).toBeGreaterThan(0);

    const refused = expectExit(await job.londiste("subscriber", "uninstall"), 1);
    expect(refused).toContain("londiste: subscriber uninstall failed (conflict): the job still replicates");
    const tables = (await job.londisteJson<Array<{ table: string }>>("subscriber", "tables")).map((t) => t.table);
    expectOk(await job.londiste("subscriber", "remove", ...tables));
    await waitRelayed("the removals on the stream");

    const done = expectOk(await job.londiste("subscriber", "uninstall"));
    expect(done).toContain(`stream: ${stream}`);
    expect(done).toContain("stream_deleted: true");
    expect(done).toContain("consumer_unregistered: true");
    await expect(jsm.streams.info(stream)).rejects.toThrow(/stream not found/);
    const { rows } = await job.subscriber.query("select count(*)::int as n from londiste.sync_outbox where queue_name = $1", [job.queue]);
    expect(rows[0].n).toBe(0);
    const consumers = await job.provider.query("select 1 from pgq.get_consumer_info($1, $2)", [job.queue, job.jobName]);
    expect(consumers.rows).toHaveLength(0);
  });
});
