/**
 * A replication job spread over network-namespace hosts, for the
 * multi-host fault tests: the layout of host-cluster.ts with every
 * server and service a ServiceProcess of this test file (started with
 * `ip netns exec`, so its pid is the service's own and the file's cleanup
 * kills it). It has the shape of the single-host LondisteJob
 * (test/londiste/job.ts), so the crash-test helpers (writers, waits,
 * exactly-once checks) work on it unchanged; the databases are reached
 * through their Unix sockets.
 *
 *   const env = await createMultiHostJob("mh");   // fails, saying why, without namespaces
 *   env.startOn("a1", "replay-a", "replay");
 *   await env.net.cut("a1");
 *   ...
 *   await env.destroy();                           // also in afterAll
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { uniqueName, type TestDatabase } from "./db.ts";
import { HostNet, checkNamespaceSupport } from "./hosts.ts";
import {
  HostPostgres,
  type JobNames,
  LAYOUT_HOSTS,
  londisteConfig,
  NATS_HOSTS,
  NATS_MONITOR_PORT,
  tickerConfig,
  writeNatsConfigs,
} from "./host-cluster.ts";
import { natsServerBin } from "./nats-server.ts";
import { type CliResult, PGQADM_LAUNCHER, runPgqadm, show } from "./pgqadm.ts";
import { makeTempDir, REPO_ROOT, SERVICE_START_MS, ServiceProcess, startForFile } from "./processes.ts";
import { MachineClock, sleep } from "./wait.ts";
import type { LondisteJob } from "../londiste/job.ts";

export const LONDISTE_LAUNCHER = join(REPO_ROOT, "services/cli/londiste.js");

export interface MultiHostJob extends LondisteJob {
  net: HostNet;
  providerPg: HostPostgres;
  subscriberPg: HostPostgres;
  /** NATS node per host (a1, a2, a3), replaced when restarted. */
  nats: Map<string, ServiceProcess>;
  /** The job's config file on each host. */
  confOn(host: string): string;
  /** Starts `londiste CONF COMMAND [extra...]` on a host (a process of the test file: see startForFile). */
  startOn(host: string, label: string, command: string, extra?: string[]): ServiceProcess;
  /** Runs `londiste CONF ARGS...` on a host to completion. */
  londisteOn(host: string, ...args: string[]): Promise<CliResult>;
  /** Starts (again) the NATS node of a host, on its kept JetStream store; resolves once it serves. */
  startNats(host: string): Promise<ServiceProcess>;
  /** GET http://127.0.0.1:8222<path> on a NATS node's host (its monitoring endpoint), parsed. */
  natsMonitor<T = unknown>(host: string, path: string): Promise<T>;
  /** Every process started, oldest first. */
  all: ServiceProcess[];
  destroy(): Promise<void>;
}

/** A TestDatabase over a Unix socket of a host's cluster. */
async function socketDatabase(cluster: HostPostgres, name: string): Promise<TestDatabase> {
  const admin = new pg.Client({ connectionString: cluster.localUrl("postgres") });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = cluster.localUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  pool.on("error", () => {}); // a cluster killed by a test ends idle clients
  let ended: Promise<void> | undefined;
  return {
    name,
    url,
    pool,
    query: (sql, params) => pool.query(sql, params),
    // The cluster is removed with its files: ending the pool is all there is to do.
    drop: () => (ended ??= Promise.race([pool.end().catch(() => {}), sleep(15_000)]).then(() => {})),
  };
}

/** Waits until the NATS node's output shows a JetStream metadata leader (the cluster formed). */
async function waitNatsReady(p: ServiceProcess, from: number): Promise<void> {
  const clock = new MachineClock();
  while (!/JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(p.output.slice(from))) {
    if (!p.running) throw new Error(`${p.label} exited: ${p.tail()}`);
    if (clock.elapsed() > SERVICE_START_MS) throw new Error(`${p.label}: no JetStream metadata leader within ${clock.describe()}:\n${p.tail()}`);
    await sleep(100);
  }
}

/**
 * Makes the hosts, the two clusters and the NATS cluster, writes the
 * job's configs and starts the ticker (on a3). Nothing of londiste is
 * installed; no replay or copy worker runs yet. Fails with the reason when
 * network namespaces cannot be made.
 */
export async function createMultiHostJob(label: string, extraConfig: string[] = []): Promise<MultiHostJob> {
  await checkNamespaceSupport();
  const natsBin = natsServerBin(); // throws, saying where it looked
  const net = await HostNet.create([...LAYOUT_HOSTS]);
  const all: ServiceProcess[] = [];
  const clusters: HostPostgres[] = [];
  try {
    const dir = makeTempDir(label);
    const [providerPg, subscriberPg] = await Promise.all([HostPostgres.create(net, "pgp"), HostPostgres.create(net, "pgs")]);
    clusters.push(providerPg, subscriberPg);
    const names: JobNames = {
      jobName: `${label}_job`,
      queue: "replika",
      subjectPrefix: `test.${uniqueName(label)}`,
      providerDb: `${label}_p`,
      subscriberDb: `${label}_s`,
    };
    const [provider, subscriber] = await Promise.all([
      socketDatabase(providerPg, names.providerDb),
      socketDatabase(subscriberPg, names.subscriberDb),
    ]);

    const natsConfs = await writeNatsConfigs(net, dir);
    const nats = new Map<string, ServiceProcess>();
    let natsStarts = 0;
    const startNats = async (host: string) => {
      const [cmd, args] = net.command(host, natsBin, ["-c", natsConfs.get(host)!]);
      const p = startForFile(() => new ServiceProcess(`nats-${host}-${++natsStarts}`, cmd, args));
      nats.set(host, p);
      all.push(p);
      await waitNatsReady(p, 0);
      return p;
    };
    await Promise.all(NATS_HOSTS.map((h) => startNats(h)));

    const confs = new Map<string, string>();
    for (const host of LAYOUT_HOSTS) {
      const hostDir = join(dir, host);
      mkdirSync(hostDir, { recursive: true });
      const conf = join(hostDir, "londiste.ini");
      writeFileSync(conf, londisteConfig(names, providerPg, subscriberPg, extraConfig, join(hostDir, "repair")));
      confs.set(host, conf);
    }
    const tickerConf = join(dir, "a3", "ticker.ini");
    writeFileSync(tickerConf, tickerConfig(names, providerPg));

    const spawnOn = (host: string, label: string, argv: string[]) => {
      const [cmd, args] = net.command(host, process.execPath, argv);
      // The services outlive the test that (re)started them: the next scenario runs on them.
      const p = startForFile(() => new ServiceProcess(label, cmd, args));
      all.push(p);
      return p;
    };
    const startOn = (host: string, plabel: string, command: string, extra: string[] = []) =>
      spawnOn(host, plabel, [LONDISTE_LAUNCHER, confs.get(host)!, command, ...extra]);
    const startTicker = (plabel: string) => spawnOn("a3", plabel, [PGQADM_LAUNCHER, tickerConf, "ticker"]);
    const londisteOn = (host: string, ...args: string[]) =>
      runPgqadm([confs.get(host)!, ...args], { command: [...net.command(host, process.execPath, [LONDISTE_LAUNCHER]).flat()] });
    const ticker = startTicker(`${label}-ticker`);

    let destroyed: Promise<void> | undefined;
    const destroy = () =>
      (destroyed ??= (async () => {
        await Promise.all(all.map((p) => p.kill("SIGKILL")));
        await provider.drop();
        await subscriber.drop();
        for (const c of clusters) await c.remove();
        await net.destroy();
      })());
    return {
      net,
      providerPg,
      subscriberPg,
      nats,
      all,
      provider,
      subscriber,
      conf: confs.get("a3")!,
      queue: names.queue,
      jobName: names.jobName,
      subjectPrefix: names.subjectPrefix,
      dir,
      ticker,
      confOn: (host) => confs.get(host)!,
      startOn,
      londisteOn,
      startNats,
      natsMonitor: async <T>(host: string, path: string) => {
        const script = `fetch("http://127.0.0.1:${NATS_MONITOR_PORT}" + process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))`;
        return JSON.parse(await net.exec(host, process.execPath, ["-e", script, path])) as T;
      },
      startReplay: (plabel = `${label}-replay`, extra: string[] = []) => startOn("a1", plabel, "replay", extra),
      start: (plabel: string, command: string, extra: string[] = []) => startOn("a3", plabel, command, extra),
      startTicker,
      londiste: (...args: string[]) => londisteOn("a3", ...args),
      londisteJson: async <T>(...args: string[]) => {
        const r = await londisteOn("a3", "--json", ...args);
        if (r.code !== 0) throw new Error(`londiste ${args.join(" ")} failed: ${show(r)}`);
        return JSON.parse(r.stdout) as T;
      },
      drop: destroy,
      destroy,
    };
  } catch (error) {
    await Promise.all(all.map((p) => p.kill("SIGKILL")));
    for (const c of clusters) await c.remove().catch(() => {});
    await net.destroy();
    throw error;
  }
}
