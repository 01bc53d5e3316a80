/**
 * `npm run hosts -- up|down|status`: the multi-host layout of the fault
 * tests (test/support/hosts.ts, host-cluster.ts) brought up by hand, for a
 * demo and for debugging. Needs root (network namespaces).
 *
 *   up      five hosts (namespaces skyhdemo-pgp, -pgs, -a1, -a2, -a3 and the
 *           switch skyhdemo-sw), provider and subscriber PostgreSQL, a
 *           3-node NATS cluster, londiste installed, a table public.demo
 *           replicated, ticker, replay (a1 active, a2 standby), copy workers
 *           (a1, a2) and a repair worker (a3) running in the background;
 *           prints how to reach everything. Logs and configs in the state
 *           folder (HOSTS_DIR, default /tmp/skytools-hosts).
 *   down    kills everything in those namespaces, removes them and the folder.
 *   status  lists the namespaces and the processes in them.
 *
 * Faults by hand, e.g.: `ip -n skyhdemo-sw link set a1 down` (cut a1 off),
 * `... up` (back), `kill -STOP <pid>`, `ip netns pids skyhdemo-a1`.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { checkNamespaceSupport, HostNet, removeHosts } from "../test/support/hosts.ts";
import { HostPostgres, LAYOUT_HOSTS, londisteConfig, NATS_HOSTS, tickerConfig, writeNatsConfigs, type JobNames } from "../test/support/host-cluster.ts";
import { natsServerBin } from "../test/support/nats-server.ts";

const run = promisify(execFile);
const ID = "skyhdemo";
const DIR = process.env.HOSTS_DIR ?? "/tmp/skytools-hosts";
const ROOT = new URL("../", import.meta.url).pathname;
const LONDISTE = join(ROOT, "services/cli/londiste.js");
const PGQADM = join(ROOT, "services/cli/pgqadm.js");

const say = (text: string) => process.stdout.write(`${text}\n`);

/** Starts a command in a host's namespace in the background, output to DIR/logs/<label>.log. */
function background(net: HostNet, host: string, label: string, cmd: string, args: string[]): number {
  const log = openSync(join(DIR, "logs", `${label}.log`), "a");
  const [c, a] = net.command(host, cmd, args);
  const child = spawn(c, a, { cwd: ROOT, detached: true, stdio: ["ignore", log, log] });
  child.unref();
  return child.pid!;
}

async function waitForFile(path: string, text: RegExp, what: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  for (let i = 0; i < 600; i++) {
    if (text.test(await readFile(path, "utf8").catch(() => ""))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not ready after 60 s (see ${path})`);
}

async function cli(net: HostNet, host: string, launcher: string, conf: string, args: string[]): Promise<string> {
  const [c, a] = net.command(host, process.execPath, [launcher, conf, ...args]);
  try {
    return (await run(c, a, { cwd: ROOT, encoding: "utf8" })).stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${[launcher.split("/").pop(), ...args].join(" ")} on ${host} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

async function up(): Promise<void> {
  await checkNamespaceSupport();
  if (existsSync(join(DIR, "state.json"))) throw new Error(`${DIR}/state.json exists: the layout is up already (npm run hosts -- down first)`);
  mkdirSync(join(DIR, "logs"), { recursive: true });
  const net = await HostNet.create([...LAYOUT_HOSTS], ID);
  say(`hosts: ${[...net.hosts.values()].map((h) => `${h.name} ${h.addr} (netns ${h.ns})`).join(", ")}; switch netns ${net.switchNs}`);
  const [prov, sub] = await Promise.all([HostPostgres.create(net, "pgp", DIR), HostPostgres.create(net, "pgs", DIR)]);
  const names: JobNames = { jobName: "demo", queue: "replika", subjectPrefix: "demo", providerDb: "provider", subscriberDb: "subscriber" };
  for (const [cluster, db] of [
    [prov, names.providerDb],
    [sub, names.subscriberDb],
  ] as const) {
    const c = new pg.Client({ connectionString: cluster.localUrl("postgres") });
    await c.connect();
    await c.query(`create database "${db}"`);
    await c.end();
    const d = new pg.Client({ connectionString: cluster.localUrl(db) });
    await d.connect();
    await d.query("create table public.demo (id int primary key, v text)");
    if (cluster === prov) await d.query("insert into public.demo select g, md5(g::text) from generate_series(1, 10000) g");
    await d.end();
  }
  say(`PostgreSQL: provider ${prov.serviceUrl(names.providerDb)}, subscriber ${sub.serviceUrl(names.subscriberDb)} (from the root namespace: ${prov.localUrl(names.providerDb)})`);

  const natsBin = natsServerBin();
  const natsConfs = await writeNatsConfigs(net, DIR);
  for (const host of NATS_HOSTS) background(net, host, `nats-${host}`, natsBin, ["-c", natsConfs.get(host)!]);
  for (const host of NATS_HOSTS) await waitForFile(join(DIR, "logs", `nats-${host}.log`), /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/, `NATS on ${host}`);
  say(`NATS: nodes on ${NATS_HOSTS.join(", ")} (nats://<host address>:4222, monitoring on :8222)`);

  const confs = new Map<string, string>();
  for (const host of LAYOUT_HOSTS) {
    mkdirSync(join(DIR, host), { recursive: true });
    const conf = join(DIR, host, "londiste.ini");
    writeFileSync(conf, londisteConfig(names, prov, sub, ["copy_lease = 5"], join(DIR, host, "repair")));
    confs.set(host, conf);
  }
  const tickerConf = join(DIR, "a3", "ticker.ini");
  writeFileSync(tickerConf, tickerConfig(names, prov));
  const a3 = confs.get("a3")!;
  await cli(net, "a3", PGQADM, tickerConf, ["install"]);
  await cli(net, "a3", LONDISTE, a3, ["provider", "install"]);
  background(net, "a3", "ticker-a3", process.execPath, [PGQADM, tickerConf, "ticker"]);
  await cli(net, "a3", LONDISTE, a3, ["subscriber", "install"]);
  await cli(net, "a3", LONDISTE, a3, ["subscriber", "register"]);
  background(net, "a1", "replay-a1", process.execPath, [LONDISTE, confs.get("a1")!, "replay"]);
  await waitForFile(join(DIR, "logs", "replay-a1.log"), /active: this instance replays the job/, "replay on a1");
  background(net, "a2", "replay-a2", process.execPath, [LONDISTE, confs.get("a2")!, "replay"]);
  for (const host of ["a1", "a2"]) background(net, host, `copy-${host}`, process.execPath, [LONDISTE, confs.get(host)!, "copy"]);
  background(net, "a3", "repair-a3", process.execPath, [LONDISTE, a3, "repair-worker"]);
  await cli(net, "a3", LONDISTE, a3, ["provider", "add", "public.demo"]);
  await cli(net, "a3", LONDISTE, a3, ["subscriber", "add", "public.demo"]);
  writeFileSync(join(DIR, "state.json"), JSON.stringify({ id: ID, dirs: [prov.baseDir, sub.baseDir] }, null, 2));
  say(`services: ticker and repair worker on a3, replay on a1 (active) and a2 (standby), copy workers on a1 and a2; logs in ${DIR}/logs`);
  say("");
  say("try:");
  say(`  ip netns exec ${ID}-a3 node ${LONDISTE} ${a3} status`);
  say(`  ip netns exec ${ID}-a3 node ${LONDISTE} ${a3} watch --all`);
  say(`  ip -n ${ID}-sw link set a1 down      # cut a1 off (the standby on a2 takes over); 'up' to heal`);
  say(`  psql '${prov.localUrl(names.providerDb)}' -c "update public.demo set v = 'x' where id < 100"`);
  say("  npm run hosts -- down");
}

async function down(): Promise<void> {
  const removed = await removeHosts(ID);
  const pgDirs = existsSync(DIR) ? (await import("node:fs")).readdirSync(DIR).filter((n) => n.startsWith("skytools-hosts-")) : [];
  rmSync(DIR, { recursive: true, force: true });
  say(removed.length > 0 ? `removed ${removed.join(", ")}` : "no namespaces of the hosts layout");
  if (pgDirs.length > 0) say(`removed ${DIR} (${pgDirs.length} PostgreSQL clusters)`);
}

async function status(): Promise<void> {
  const { stdout } = await run("ip", ["netns", "list"], { encoding: "utf8" });
  const names = stdout.split("\n").map((l) => l.trim().split(/\s+/)[0] ?? "").filter((n) => n.startsWith(`${ID}-`));
  if (names.length === 0) say("the hosts layout is not up");
  for (const n of names.sort()) {
    const pids = (await run("ip", ["netns", "pids", n], { encoding: "utf8" })).stdout.split(/\s+/).filter(Boolean);
    const cmds = await Promise.all(pids.map((p) => run("ps", ["-o", "args=", "-p", p], { encoding: "utf8" }).then((r) => `${p} ${r.stdout.trim().slice(0, 100)}`, () => p)));
    say(`${n}:${cmds.length > 0 ? `\n  ${cmds.join("\n  ")}` : " (no processes)"}`);
  }
}

const command = process.argv[2];
const actions: Record<string, () => Promise<void>> = { up, down, status };
const action = command ? actions[command] : undefined;
if (!action) {
  process.stderr.write("usage: npm run hosts -- up|down|status\n");
  process.exit(2);
}
action().then(
  () => process.exit(0),
  async (error: unknown) => {
    process.stderr.write(`hosts ${command}: ${(error as Error).message}\n`);
    if (command === "up") {
      process.stderr.write("cleaning up what was made\n");
      await down().catch(() => {});
    }
    process.exit(1);
  },
);
