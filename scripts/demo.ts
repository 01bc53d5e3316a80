/**
 * `npm run demo`: the main Londiste job end to end on this machine, told
 * as it happens. Provider and subscriber databases with a small shop
 * schema, the ticker, replay, two copy workers and the dashboard (a live
 * status page; its URL is printed) as separate processes,
 * a writer changing the provider the whole time, the londiste commands a
 * user types, each table's state changes (from JetStream) and copy
 * progress (from NATS) as they arrive, then a comparison of both sides.
 *
 * Servers: DATABASE_URL / NATS_URL when set (the demo creates its own
 * databases and subject prefix there and removes them), else a throwaway
 * PostgreSQL and nats-server from the local binaries.
 * Environment: DEMO_KEEP=1 keeps the temp dir (configs, logs);
 * DEMO_ORDERS / DEMO_CUSTOMERS change the sample size; DEMO_TIMEOUT (seconds,
 * default 120) is how long the tables get to reach ok; DEMO_DASHBOARD_PORT
 * the port of the dashboard it starts (default: a free one; it prints the URL).
 * Exit codes: 0 equal, 1 anything else (the message says what), 130 Ctrl-C.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { subjectToken } from "../shared/config/common-keys.ts";
import { londisteSubjects } from "../shared/config/londiste.ts";
import { ensureStateStream, type StateChangeMessage, stateStreamName } from "../shared/londiste/state-events.ts";
import { baseState, formatProgress, holdLive, indent, live, releaseLive, say, stamp, StateNarrator, step } from "./demo/narrate.ts";
import { LONDISTE, PGQADM, runCli, Service } from "./demo/processes.ts";
import {
  COMPARE_SETTINGS,
  createSampleData,
  createSchema,
  SEQUENCES,
  sequenceValue,
  summarize,
  TABLES,
  Writer,
} from "./demo/sample.ts";
import {
  DemoError,
  findBinaries,
  givenNats,
  givenPostgres,
  INSTALL_HELP,
  openForPostgres,
  type Server,
  startThrowawayNats,
  startThrowawayPostgres,
  urlForDatabase,
} from "./demo/servers.ts";

/** The demo's exit codes: 0 both sides equal, 1 anything else (the message says what), 130 interrupted. */
export type DemoExitCode = 0 | 1 | 130;

const ORDERS = positiveInt(process.env.DEMO_ORDERS, 2_000_000);
const CUSTOMERS = positiveInt(process.env.DEMO_CUSTOMERS, 5_000);
const KEEP = process.env.DEMO_KEEP === "1";
/** How long the tables get to reach ok after `subscriber add`. */
const OK_TIMEOUT_MS = positiveInt(process.env.DEMO_TIMEOUT, 120) * 1000;
/** The dashboard's port: DEMO_DASHBOARD_PORT, else a free one. */
const DASHBOARD_PORT = process.env.DEMO_DASHBOARD_PORT?.trim() || "0";
const QUEUE = "shop_changes";
const JOB = "shop";

// ------------------------------------------------------------------ clean-up

type Cleanup = { what: string; run: () => Promise<void> };
const cleanups: Cleanup[] = [];
const services: Service[] = [];
let cleaning: Promise<void> | undefined;
let cleaned = false;
let tempDir: string | undefined;

function onCleanup(what: string, run: () => Promise<void>): void {
  cleanups.push({ what, run });
}

/** Undoes everything in reverse order, once; a failing step does not stop the others. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c.run();
      } catch (error) {
        process.stderr.write(`clean-up: ${c.what} failed: ${(error as Error).message}\n`);
      }
    }
    cleaned = true;
  })();
  return cleaning;
}

/** Throwaway servers, for the last-resort kill. */
const servers: Server[] = [];

// Last resort (the demo dies without cleaning up): no service or throwaway server outlives it.
process.once("exit", () => {
  for (const s of services) if (!s.exited) s.child.kill("SIGKILL");
  for (const s of servers) s.kill();
  if (!cleaned && tempDir && !KEEP) rmSync(tempDir, { recursive: true, force: true, maxRetries: 3 });
});
// A closed terminal or pipe must not stop the clean-up halfway.
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

let interrupted = false;
let interruptedAt = 0;

/** Ends the main flow once Ctrl-C was pressed (the signal handler cleans up and exits). */
function checkInterrupted(): void {
  if (interrupted) throw new DemoError("interrupted");
}
/** A throwaway server being started (its stop is registered once it is up). */
let starting: Promise<unknown> | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) {
      // One Ctrl-C can arrive twice (the terminal, and tsx passing it on).
      if (Date.now() - interruptedAt > 1_000) say("(still cleaning up, one moment)");
      return;
    }
    interrupted = true;
    interruptedAt = Date.now();
    say();
    say(`${stamp()} Interrupted (${signal}): stopping everything the demo started...`);
    // A server that is starting is let finish, so that it is stopped too.
    void (starting ?? Promise.resolve())
      .catch(() => {})
      .then(cleanUp)
      .finally(() => {
        say("Cleaned up.");
        process.exit(130);
      });
  });
}

// ------------------------------------------------------------------ the demo

async function main(): Promise<number> {
  const demoStart = Date.now();
  say("Londiste demo: replicating a live PostgreSQL database, table by table");
  say("=====================================================================");
  say(`This sets up two databases: a "provider" (the source) holding a small shop, ${CUSTOMERS.toLocaleString("en-US")} customers`);
  say(`and ${ORDERS.toLocaleString("en-US")} orders, and an empty "subscriber" (the replica). While a writer keeps changing`);
  say("the provider (a few inserts, updates and deletes every 100 ms), the demo");
  say("  1. starts the services, each its own process: the PgQ ticker, Londiste replay, two copy workers");
  say("     and the dashboard, a live status page (it prints the URL: open it in a browser to watch);");
  say("  2. sets up replication with the `londiste` commands you would type yourself;");
  say("  3. shows live how each table is copied (rows, MB/s) and then handed over from the copy to replay,");
  say('     until every table is "ok";');
  say("  4. stops the writer, waits for the subscriber to catch up and compares both sides, table by table.");
  say("It removes everything it started at the end (DEMO_KEEP=1 keeps the logs and configs); Ctrl-C stops it cleanly.");

  const id = randomBytes(4).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "skytools-demo-"));
  tempDir = dir;
  onCleanup("removing the temp dir", async () => {
    if (KEEP) {
      // The throwaway servers' data is of no use once they are stopped: only configs and logs stay.
      for (const data of ["postgres/data", "nats/js"]) rmSync(join(dir, data), { recursive: true, force: true });
      say(`Kept ${dir} (DEMO_KEEP=1): configs and logs are there.`);
    }
    else rmSync(dir, { recursive: true, force: true });
  });

  // --- servers
  step("Finding PostgreSQL and NATS");
  const [pgServer, natsServer] = await findServers(dir);
  say(`    PostgreSQL: ${pgServer.origin}`);
  say(`    NATS:       ${natsServer.origin}`);

  // --- databases and sample data
  const providerName = `demo_${id}_provider`;
  const subscriberName = `demo_${id}_subscriber`;
  step(`Creating the databases: ${providerName} (provider), ${subscriberName} (subscriber)`);
  const admin = new pg.Pool({ connectionString: pgServer.url, max: 1 });
  admin.on("error", () => {});
  onCleanup("closing the admin connection", () => admin.end());
  for (const name of [providerName, subscriberName]) {
    await admin.query(`create database ${name}`);
    onCleanup(`dropping database ${name}`, async () => {
      await admin.query(`drop database if exists ${name} with (force)`);
    });
  }
  const providerUrl = urlForDatabase(pgServer.url, providerName);
  const subscriberUrl = urlForDatabase(pgServer.url, subscriberName);
  const provider = pool(providerUrl);
  const subscriber = pool(subscriberUrl);
  onCleanup("closing the database connections", async () => {
    await provider.end();
    await subscriber.end();
  });

  say("    Both get the same tables (Londiste replicates rows, not table definitions):");
  say("      customers (id serial primary key, name, email, country, created_at)");
  say("      orders    (id bigserial primary key, customer_id → customers, invoice_no, amount, status, ordered_at, note)");
  say("      sequence invoice_no");
  say(`    Loading ${CUSTOMERS.toLocaleString("en-US")} customers and ${ORDERS.toLocaleString("en-US")} orders into the provider (the subscriber stays empty)...`);
  const loadStart = Date.now();
  await createSampleData(provider, CUSTOMERS, ORDERS, (n) => {
    checkInterrupted();
    if (n < ORDERS) say(`      ${n.toLocaleString("en-US")} orders (${secondsSince(loadStart)} s)`);
  });
  await createSchema(subscriber);
  const { rows: size } = await provider.query<{ mb: string }>("select round(pg_table_size('orders') / 1e6) as mb");
  say(`    ...done in ${secondsSince(loadStart)} s (orders: ${size[0]!.mb} MB on disk).`);

  // --- configs
  const subjectPrefix = `demo_${id}`;
  const tickerConf = join(dir, "ticker.ini");
  const londisteConf = join(dir, "londiste.ini");
  writeFileSync(
    tickerConf,
    [
      "; written by npm run demo: the PgQ ticker of the provider",
      "[pgqadm]",
      "job_name = shop_ticker",
      `db = ${providerUrl}`,
      `nats_url = ${natsServer.url}`,
      `subject_prefix = ${subjectPrefix}`,
      "loop_delay = 0.1",
      "maint_delay = 30",
      "",
    ].join("\n"),
  );
  writeFileSync(
    londisteConf,
    [
      "; written by npm run demo: one replication job, provider → subscriber",
      "[londiste]",
      `job_name = ${JOB}`,
      `provider_db = ${providerUrl}`,
      `subscriber_db = ${subscriberUrl}`,
      `pgq_queue_name = ${QUEUE}`,
      `nats_url = ${natsServer.url}`,
      `subject_prefix = ${subjectPrefix}`,
      "loop_delay = 0.2",
      "parallel_copies = 1",
      "copy_lease = 10",
      "command_timeout = 30",
      "",
    ].join("\n"),
  );
  step(`Config files and logs go to DEMO=${dir}`);
  say("    $DEMO/ticker.ini    [pgqadm]: the provider database, NATS");
  say("    $DEMO/londiste.ini  [londiste]: provider_db, subscriber_db, pgq_queue_name, NATS");

  // --- watching: state changes from JetStream, copy progress from NATS
  const nc = await connect({ servers: natsServer.url, name: "londiste demo" });
  onCleanup("closing the NATS connection", () => nc.close());
  if (natsServer.origin.startsWith("NATS_URL")) {
    onCleanup("deleting the demo's JetStream stream", async () => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stateStreamName(subjectPrefix, JOB)).catch(() => false);
    });
  }
  const narrator = new StateNarrator();
  const stopWatching = await watch(nc, subjectPrefix, narrator);
  onCleanup("stopping the watchers", stopWatching);

  // --- services
  step("Starting the services, each as its own process (logs in $DEMO/*.log):");
  const start = (name: string, launcher: string, conf: string, command: string, what: string) => {
    checkInterrupted();
    const s = new Service(name, join(dir, `${name}.log`), launcher, [conf, command]);
    services.push(s);
    say(`    npx ${launcher === PGQADM ? "pgqadm" : "londiste"} $DEMO/${conf === tickerConf ? "ticker.ini" : "londiste.ini"} ${command}`.padEnd(44) + ` pid ${s.pid}: ${what}`);
    return s;
  };
  start("ticker", PGQADM, tickerConf, "ticker", "the ticker: cuts the provider's change queue into batches (ticks)");
  start("replay", LONDISTE, londisteConf, "replay", "replay: applies the changes to the subscriber, serves the londiste commands");
  start("copy-1", LONDISTE, londisteConf, "copy", "copy worker 1: copies whole tables when they join");
  start("copy-2", LONDISTE, londisteConf, "copy", "copy worker 2: shares the copy work with worker 1 over NATS");
  const dashboard = new Service("dashboard", join(dir, "dashboard.log"), LONDISTE, [londisteConf, "dashboard", "--port", DASHBOARD_PORT]);
  services.push(dashboard);
  say(`    npx londiste $DEMO/londiste.ini dashboard --port ${DASHBOARD_PORT}`.padEnd(44) + ` pid ${dashboard.pid}: the dashboard, a live status page (from NATS only)`);
  onCleanup("stopping the services", async () => {
    await Promise.all(services.map((s) => s.stop()));
  });

  const url = await dashboardUrl(dashboard);
  say(url ? `    Open the dashboard while the demo runs: ${url}` : `    (the dashboard did not start; its log: $DEMO/dashboard.log)\n${indent(dashboard.tail(5))}`);

  // --- the writer
  const writerClient = new pg.Client({ connectionString: providerUrl, application_name: "demo writer" });
  writerClient.on("error", () => {});
  await writerClient.connect();
  const writer = new Writer(writerClient, CUSTOMERS, ORDERS);
  writer.start();
  onCleanup("stopping the writer", async () => {
    await writer.stop();
    await writerClient.end();
  });
  say("    and the writer: new orders and customers, orders paid/shipped/deleted, every 100 ms, until the end.");

  // --- set-up commands
  step("Setting up replication, as you would type it (each command asks the replay service over NATS):");
  await londiste(londisteConf, ["provider", "install"], "PgQ and Londiste into the provider, and the queue that carries the changes");
  await command(PGQADM, "pgqadm", tickerConf, ["config", QUEUE, "ticker_max_lag=0.3s"], "tick at least every 0.3 s while there are changes (quick hand-overs for the demo)");
  await londiste(londisteConf, ["subscriber", "install"], "Londiste's tables into the subscriber");
  await londiste(londisteConf, ["provider", "add", ...TABLES], "capture every row change of these tables into the queue (a trigger)");
  await londiste(londisteConf, ["provider", "add-seq", ...SEQUENCES], "let subscribers follow these sequences");
  const added = Date.now();
  await londiste(londisteConf, ["subscriber", "add", ...TABLES], "replicate the tables here; without --expect-sync they start empty and get copied");
  await londiste(londisteConf, ["subscriber", "add-seq", ...SEQUENCES], "follow the sequences");

  // --- until every table is ok
  step(`Waiting for every table to reach "ok" (at most ${OK_TIMEOUT_MS / 1000} s); state changes arrive from JetStream:`);
  await waitForOk(subscriber, narrator, added, dir);
  say();
  say(`${stamp()} All tables are ok, ${secondsSince(added)} s after \`subscriber add\`.`);

  // --- stop writing, catch up, compare
  await writer.stop();
  const c = writer.counts;
  step(
    `Stopped the writer: it made ${c.inserts.toLocaleString("en-US")} inserts, ${c.updates.toLocaleString("en-US")} updates and ` +
      `${c.deletes.toLocaleString("en-US")} deletes during the demo` +
      (c.errors > 0 ? ` (${c.errors} transactions failed, last: ${writer.lastError})` : "") +
      ".",
  );
  const { target, recorded } = await waitForCatchUp(provider, subscriber);
  say(`    The provider's last tick is ${target}; the subscriber has applied everything up to tick ${recorded}: caught up.`);

  await londiste(londisteConf, ["status"], "how the job stands");

  step("Comparing both sides (row count and an order-independent checksum of the rows, computed in SQL):");
  const checkProvider = pool(providerUrl, COMPARE_SETTINGS);
  const checkSubscriber = pool(subscriberUrl, COMPARE_SETTINGS);
  onCleanup("closing the compare connections", async () => {
    await checkProvider.end();
    await checkSubscriber.end();
  });
  let allEqual = true;
  for (const table of TABLES) {
    const [p, s] = await Promise.all([summarize(checkProvider, table), summarize(checkSubscriber, table)]);
    const same = p.rows === s.rows && p.checksum === s.checksum;
    allEqual &&= same;
    say(
      same
        ? `    ${table}: ${p.rows.toLocaleString("en-US")} rows, checksum ${p.checksum} on both sides: equal`
        : `    ${table}: NOT EQUAL: provider ${p.rows} rows, checksum ${p.checksum}; subscriber ${s.rows} rows, checksum ${s.checksum}`,
    );
  }
  for (const seq of SEQUENCES) {
    const [p, s] = await Promise.all([sequenceValue(provider, seq), sequenceValue(subscriber, seq)]);
    const same = p === s;
    allEqual &&= same;
    say(same ? `    sequence ${seq}: ${p} on both sides: equal` : `    sequence ${seq}: NOT EQUAL: provider ${p}, subscriber ${s}`);
  }
  if (!(await foreignKeyBack(subscriber))) {
    allEqual = false;
    say("    the foreign key orders → customers is NOT back on the subscriber (`londiste $DEMO/londiste.ini subscriber fkeys` lists pending ones)");
  } else say("    the foreign key orders → customers, set aside during the copy, is back on the subscriber");
  say();
  if (!allEqual) {
    say(`${stamp()} The subscriber differs from the provider. Logs: ${dir} (kept: rerun with DEMO_KEEP=1 to look at them after the end).`);
    return 1;
  }
  say(`${stamp()} Done: the subscriber is an exact replica of the provider (demo ran ${secondsSince(demoStart)} s).`);
  say("Next: docs/londiste.md for the commands, docs/configuration.md for the config keys.");
  return 0;
}

// ------------------------------------------------------------------ steps

async function findServers(dir: string): Promise<[Server, Server]> {
  const databaseUrl = process.env.DATABASE_URL?.trim();
  const natsUrl = process.env.NATS_URL?.trim();
  const bins = await findBinaries();
  const missing: string[] = [];
  if (!databaseUrl && !bins.pgBin) missing.push("the PostgreSQL server programs (initdb, pg_ctl, postgres)");
  if (!natsUrl && !bins.natsServer) missing.push("nats-server");
  if (missing.length > 0) {
    throw new DemoError(`The demo needs a PostgreSQL and a NATS server, and could not find ${missing.join(" nor ")} on this machine.\n${INSTALL_HELP}`);
  }
  let pgServer: Server;
  if (databaseUrl) pgServer = await givenPostgres(databaseUrl);
  else {
    await openForPostgres(dir); // the postgres user must reach the data dir inside it
    say("    (DATABASE_URL is not set: starting a throwaway PostgreSQL)");
    pgServer = await (starting = startThrowawayPostgres(bins.pgBin!, join(dir, "postgres")));
    servers.push(pgServer);
  }
  onCleanup("stopping PostgreSQL", () => pgServer.stop());
  let natsServer: Server;
  if (natsUrl) natsServer = await givenNats(natsUrl);
  else {
    say("    (NATS_URL is not set: starting a throwaway nats-server with JetStream)");
    natsServer = await (starting = startThrowawayNats(bins.natsServer!, join(dir, "nats")));
    servers.push(natsServer);
  }
  onCleanup("stopping NATS", () => natsServer.stop());
  return [pgServer, natsServer];
}

/** Prints state changes (JetStream, from the stream's start) and copy progress (plain NATS) as they arrive. */
async function watch(nc: NatsConnection, prefix: string, narrator: StateNarrator): Promise<() => Promise<void>> {
  const stream = await ensureStateStream(nc, prefix, JOB);
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume();
  // Copy progress comes straight from the workers, state changes through the outbox relay (about a
  // second later): a table's progress waits until its in-copy has been shown, so the story reads in order.
  const waiting = new Map<string, Array<() => string>>();
  const copyShown = (table: string) => {
    const state = narrator.states.get(table);
    return state !== undefined && state !== null;
  };
  const flush = (table: string) => {
    for (const line of waiting.get(table) ?? []) live(line());
    waiting.delete(table);
  };
  const events = (async () => {
    for await (const msg of messages) {
      const change = msg.json<StateChangeMessage>();
      for (const line of narrator.describe(change)) live(line);
      if (copyShown(change.table)) flush(change.table);
    }
  })().catch((error: unknown) => say(`${stamp()} (no more state changes from JetStream: ${(error as Error).message})`));

  const progressSubject = londisteSubjects(prefix, JOB).copyProgress("*");
  const progress = nc.subscribe(progressSubject, {
    callback: (_error, msg) => {
      let body: Record<string, unknown>;
      try {
        body = msg.json<Record<string, unknown>>();
      } catch {
        return;
      }
      const token = msg.subject.slice(progressSubject.length - 1);
      const table = typeof body.table === "string" ? body.table : (TABLES.find((t) => subjectToken(t) === token) ?? token);
      const line = () => formatProgress(table, body, workerName(body.worker));
      if (copyShown(table)) {
        live(line());
        return;
      }
      if (!waiting.has(table)) {
        waiting.set(table, []);
        setTimeout(() => flush(table), 3_000); // the relay is late: show it anyway
      }
      waiting.get(table)!.push(line);
    },
  });
  return async () => {
    progress.unsubscribe();
    await messages.close();
    await events;
  };
}

/** `londiste $DEMO/londiste.ini ARGS...`, shown as typed, with its output. */
function londiste(conf: string, args: string[], what: string): Promise<void> {
  return command(LONDISTE, "londiste", conf, args, what);
}

async function command(launcher: string, tool: string, conf: string, args: string[], what: string): Promise<void> {
  checkInterrupted();
  say();
  say(`  $ npx ${tool} $DEMO/${conf.split("/").pop()} ${args.join(" ")}`);
  say(`    # ${what}`);
  const deadline = Date.now() + 30_000;
  let waited = false;
  holdLive(); // state changes that arrive meanwhile are printed after the command's output
  try {
    for (;;) {
      const r = await runCli(launcher, [conf, ...args]);
      // 3: no service answered yet (it is still starting).
      if (r.code === 3 && Date.now() < deadline) {
        if (!waited) say(`    (the ${tool === "pgqadm" ? "ticker" : "replay service"} is still starting; trying again)`);
        waited = true;
        checkServices();
        await sleep(500);
        continue;
      }
      const output = `${r.stdout}${r.stderr}`.trim();
      if (output) say(indent(output));
      if (r.code !== 0) throw new DemoError(`\`${tool} ${args.join(" ")}\` failed (exit ${r.code}).${serviceHint()}`);
      return;
    }
  } finally {
    releaseLive();
  }
}

/** Waits until the subscriber has every table at ok (and JetStream told us), or fails with a clear message. */
async function waitForOk(subscriber: pg.Pool, narrator: StateNarrator, since: number, dir: string): Promise<void> {
  let dbOkSince: number | undefined;
  for (;;) {
    checkServices();
    const { rows } = await subscriber.query<{ table_name: string; merge_state: string | null; last_error: string | null }>(
      "select table_name, merge_state, last_error from londiste.subscriber_get_table_info($1)",
      [QUEUE],
    );
    const failed = rows.find((r) => r.merge_state === "error");
    if (failed) throw new DemoError(`${failed.table_name} failed: ${failed.last_error ?? "(no message)"}.${serviceHint()}`);
    const allOk = rows.length === TABLES.length && rows.every((r) => r.merge_state === "ok");
    if (allOk) {
      if (TABLES.every((t) => narrator.reachedOk.has(t))) return;
      dbOkSince ??= Date.now();
      // The state events are relayed about once a second; do not wait forever if the relay is stuck.
      if (Date.now() - dbOkSince > 10_000) {
        say(`${stamp()} (the subscriber has every table at ok, but JetStream has not reported all of them: going on)`);
        return;
      }
    }
    if (Date.now() - since > OK_TIMEOUT_MS) {
      const waiting = rows.filter((r) => r.merge_state !== "ok").map((r) => `${r.table_name} (${baseState(r.merge_state) === "(none)" ? "(none)" : r.merge_state})`);
      throw new DemoError(
        `Timed out: ${OK_TIMEOUT_MS / 1000} s after \`subscriber add\` these tables are still not ok: ${waiting.join(", ") || "(state events missing)"}.\n` +
          `Look at the service logs in ${dir} (rerun with DEMO_KEEP=1 to keep them).${recentProblems()}`,
      );
    }
    await sleep(250);
  }
}

/** Forces a tick after the writer's last commit and waits until replay has applied up to it. */
async function waitForCatchUp(provider: pg.Pool, subscriber: pg.Pool): Promise<{ target: number; recorded: number }> {
  const lastTick = async () =>
    Number((await provider.query<{ t: string }>("select last_tick_id as t from pgq.get_queue_info($1)", [QUEUE])).rows[0]!.t);
  const before = await lastTick();
  await provider.query("select pgq.force_tick($1)", [QUEUE]);
  const deadline = Date.now() + 30_000;
  let target = before;
  while (target <= before) {
    if (Date.now() > deadline) throw new DemoError(`The ticker made no new tick in 30 s (last tick ${before}).${serviceHint()}`);
    checkServices();
    await sleep(100);
    target = await lastTick();
  }
  for (;;) {
    const { rows } = await subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [JOB]);
    const recorded = rows[0]!.t === null ? 0 : Number(rows[0]!.t);
    if (recorded >= target) return { target, recorded };
    if (Date.now() > deadline) {
      throw new DemoError(`Replay did not catch up within 30 s: it is at tick ${recorded}, the provider at ${target}.${serviceHint()}`);
    }
    checkServices();
    await sleep(200);
  }
}

/** Whether the subscriber's orders → customers foreign key has been restored (waits a few seconds for it). */
async function foreignKeyBack(subscriber: pg.Pool): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const { rows } = await subscriber.query<{ n: string }>(
      "select count(*) as n from pg_constraint where conrelid = 'public.orders'::regclass and contype = 'f' and confrelid = 'public.customers'::regclass",
    );
    if (Number(rows[0]!.n) > 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** Fails when a service died: a demo with a dead service would only time out. */
function checkServices(): void {
  checkInterrupted();
  const dead = services.find((s) => s.exited);
  if (dead) {
    throw new DemoError(`The ${dead.name} service stopped (exit ${dead.exitCode}). The end of ${dead.log}:\n${indent(dead.tail())}`);
  }
}

/** "copy worker 2" for a copy worker id `<host>:<pid>:<hex>` of one of ours. */
function workerName(worker: unknown): string {
  const pid = typeof worker === "string" ? Number(worker.split(":")[1]) : NaN;
  const service = services.find((s) => s.pid === pid);
  return service ? service.name.replace("copy-", "copy worker ") : "a copy worker";
}

/** The last warnings and errors the services logged, for a timeout message. */
function recentProblems(): string {
  const lines: string[] = [];
  for (const s of services) {
    const bad = s
      .tail(400)
      .split("\n")
      .filter((l) => /"level":(4|5|6)0/.test(l))
      .slice(-3);
    if (bad.length > 0) lines.push(`  ${s.name}:`, ...bad.map((l) => `    ${l.length > 400 ? `${l.slice(0, 400)}...` : l}`));
  }
  return lines.length > 0 ? `\nLast warnings and errors of the services:\n${lines.join("\n")}` : "";
}

function serviceHint(): string {
  return services.length > 0 ? `\nService logs: ${services.map((s) => s.log).join(", ")}` : "";
}

// ------------------------------------------------------------------ small things

function pool(url: string, options?: string): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max: 3, application_name: "londiste demo", ...(options ? { options } : {}) });
  p.on("error", () => {});
  return p;
}

function secondsSince(t: number): string {
  return ((Date.now() - t) / 1000).toFixed(1);
}

/** The page's URL from the dashboard's log ("dashboard at URL"), once it listens; undefined if it did not start. */
async function dashboardUrl(dashboard: Service): Promise<string | undefined> {
  for (let i = 0; i < 200 && !dashboard.exited; i++) {
    const url = /"msg":"dashboard at (http:\/\/[^"]+)"/.exec(dashboard.tail(50))?.[1];
    if (url) return url;
    await sleep(100);
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positiveInt(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value && Number.isInteger(n) && n > 0 ? n : fallback;
}

let code: number;
try {
  code = await main();
} catch (error) {
  if (interrupted) await new Promise(() => {}); // the signal handler exits
  say();
  if (error instanceof DemoError) say(`${stamp()} ${error.message}`);
  else say(`${stamp()} The demo failed: ${(error as Error).stack ?? String(error)}`);
  code = 1;
}
if (!interrupted) {
  say(`${stamp()} Cleaning up...`);
  await cleanUp();
  say(`${stamp()} Cleaned up everything the demo started${KEEP ? " (but the temp dir, DEMO_KEEP=1)" : ""}.`);
  process.exit(code);
}
