/**
 * What runs on the hosts of a HostNet (hosts.ts): private PostgreSQL
 * clusters and a NATS cluster with JetStream, and the layout of a
 * replication job over them. Used by the multi-host tests and by
 * `npm run hosts`; free of vitest imports.
 *
 *   pgp  provider PostgreSQL            a1  NATS n1, replay (active), copy worker 1
 *   pgs  subscriber PostgreSQL          a2  NATS n2, replay (standby), copy worker 2
 *                                       a3  NATS n3, ticker, repair worker, watch
 *
 * Each service talks to the NATS node on its own host (127.0.0.1:4222 in
 * its namespace) and to the databases over the switch. The test process
 * itself reaches the databases through their Unix sockets (a socket is
 * not in any network namespace, so no address outside the namespaces is
 * needed and a cut never hides the databases from the test).
 *
 * Server settings a deployment that wants fail-over needs (docs/multihost.md):
 * TCP keepalives every second, dead after 2 lost probes, and
 * client_connection_check_interval, so the server ends the sessions of a
 * host that vanished in ~3 s, also while they wait on a lock, and their
 * locks (replay's active lock, a copy's table) go to the standby.
 */
import { execFile } from "node:child_process";
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { HostNet } from "./hosts.ts";
import { describeExecError, findPostgresBin, PG_SETTINGS } from "./local-postgres.ts";

const run = promisify(execFile);

export const PG_PORT = 5432;
export const NATS_PORT = 4222;
export const NATS_CLUSTER_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;

/** The hosts of the layout, in address order (10.213.0.11 ...). */
export const LAYOUT_HOSTS = ["pgp", "pgs", "a1", "a2", "a3"] as const;
export type LayoutHost = (typeof LAYOUT_HOSTS)[number];
/** Hosts with a NATS node, node name n1.. in this order. */
export const NATS_HOSTS: LayoutHost[] = ["a1", "a2", "a3"];

/** Keepalive and liveness settings of the clusters (see the header). */
export const FAILOVER_PG_SETTINGS: Array<[string, string]> = [
  ["tcp_keepalives_idle", "1"],
  ["tcp_keepalives_interval", "1"],
  ["tcp_keepalives_count", "2"],
  ["tcp_user_timeout", "3000"],
  ["client_connection_check_interval", "1000"],
];

async function lookupPostgresUser(): Promise<{ uid: number; gid: number }> {
  try {
    const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    throw new Error("the multi-host tests run as root and need a `postgres` user to run initdb and the servers as");
  }
}

/** A PostgreSQL cluster inside a host's namespace. */
export class HostPostgres {
  private constructor(
    private readonly net: HostNet,
    readonly host: string,
    private readonly bin: string,
    readonly dataDir: string,
    /** Directory of the Unix socket (the test's way in). */
    readonly socketDir: string,
    /** Temp folder holding data and socket; removed by remove(). */
    readonly baseDir: string,
  ) {}

  /** URL the services use: the host's address over the switch. */
  serviceUrl(db: string): string {
    return `postgres://postgres@${this.net.host(this.host).addr}:${PG_PORT}/${encodeURIComponent(db)}`;
  }

  /** URL the test process uses: the Unix socket. */
  localUrl(db: string): string {
    return `postgres://postgres@localhost:${PG_PORT}/${encodeURIComponent(db)}?host=${encodeURIComponent(this.socketDir)}`;
  }

  private pgCtl(args: string[]): Promise<unknown> {
    const [cmd, a] = this.net.command(this.host, "runuser", ["-u", "postgres", "--", join(this.bin, "pg_ctl"), "-D", this.dataDir, ...args]);
    return run(cmd, a, { encoding: "utf8" });
  }

  /** initdb, the settings, then start inside the host. */
  static async create(net: HostNet, host: string, parent = tmpdir()): Promise<HostPostgres> {
    const bin = await findPostgresBin();
    if (!bin) throw new Error("PostgreSQL binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH");
    const owner = await lookupPostgresUser();
    const base = await mkdtemp(join(parent, `skytools-hosts-${host}-`));
    await chmod(base, 0o755);
    const data = join(base, "data");
    const sock = join(base, "sock");
    await mkdir(data, { mode: 0o700 });
    await mkdir(sock, { mode: 0o755 });
    await chown(data, owner.uid, owner.gid);
    await chown(sock, owner.uid, owner.gid);
    const pg = new HostPostgres(net, host, bin, data, sock, base);
    try {
      await run("runuser", ["-u", "postgres", "--", join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]);
    } catch (error) {
      throw new Error(`initdb for host ${host} failed: ${describeExecError(error)}`);
    }
    const settings: Array<[string, string]> = [
      ["port", String(PG_PORT)],
      ["listen_addresses", net.host(host).addr],
      ["unix_socket_directories", sock],
      ...PG_SETTINGS,
      ...FAILOVER_PG_SETTINGS,
    ];
    await appendFile(join(data, "postgresql.conf"), settings.map(([k, v]) => `${k} = '${v}'\n`).join(""));
    await appendFile(join(data, "pg_hba.conf"), `host all all ${net.host(host).addr.replace(/\.\d+$/, ".0")}/24 trust\n`);
    await pg.start();
    return pg;
  }

  get logFile(): string {
    return join(this.dataDir, "server.log");
  }

  async start(): Promise<void> {
    try {
      await this.pgCtl(["-l", this.logFile, "-w", "-t", "60", "start"]);
    } catch (error) {
      const tail = await readFile(this.logFile, "utf8").catch(() => "");
      throw new Error(`pg_ctl start on host ${this.host} failed: ${describeExecError(error)}\n${tail.slice(-2000)}`);
    }
  }

  /** Kills the cluster as a crash would (pg_ctl stop -m immediate: no checkpoint, recovery at the next start). */
  async kill(): Promise<void> {
    await this.pgCtl(["-m", "immediate", "-w", "-t", "60", "stop"]);
  }

  /** pg_ctl restart -m fast: every session is ended, the server comes back. */
  async restart(): Promise<void> {
    await this.pgCtl(["-l", this.logFile, "-m", "fast", "-w", "-t", "60", "restart"]);
  }

  /** Stops the server (if running) and removes its files. */
  async remove(): Promise<void> {
    await this.pgCtl(["-m", "immediate", "-w", "-t", "30", "stop"]).catch(() => {});
    await rm(this.baseDir, { recursive: true, force: true });
  }
}

/** The nats-server config of the node on `host` (JetStream, a route to every other node). */
export function natsNodeConfig(net: HostNet, host: string, storeDir: string, clusterName: string): string {
  const i = NATS_HOSTS.indexOf(host as LayoutHost);
  if (i < 0) throw new Error(`no NATS node on host ${host}`);
  const routes = NATS_HOSTS.filter((h) => h !== host).map((h) => `    "nats-route://${net.host(h).addr}:${NATS_CLUSTER_PORT}"`);
  return [
    `server_name: n${i + 1}`,
    `listen: "0.0.0.0:${NATS_PORT}"`,
    `http: "0.0.0.0:${NATS_MONITOR_PORT}"`,
    `jetstream {`,
    `  store_dir: "${storeDir}"`,
    `  max_memory_store: 64MB`,
    `  max_file_store: 256MB`,
    `}`,
    `cluster {`,
    `  name: "${clusterName}"`,
    `  listen: "0.0.0.0:${NATS_CLUSTER_PORT}"`,
    `  routes: [`,
    routes.join("\n"),
    `  ]`,
    `}`,
    "",
  ].join("\n");
}

/** Writes each NATS node's config under dir; returns host → config path. */
export async function writeNatsConfigs(net: HostNet, dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const host of NATS_HOSTS) {
    const store = join(dir, `nats-${host}`);
    await mkdir(store, { recursive: true });
    const path = join(dir, `nats-${host}.conf`);
    await writeFile(path, natsNodeConfig(net, host, store, net.id));
    out.set(host, path);
  }
  return out;
}

export interface JobNames {
  jobName: string;
  queue: string;
  subjectPrefix: string;
  providerDb: string;
  subscriberDb: string;
}

/**
 * The [londiste] config of the job as a service on `host` reads it: the
 * databases over the switch, the host's own NATS node, a 3-replica state
 * stream, and short timings (copy_lease, loop_delay) so faults resolve
 * quickly.
 */
export function londisteConfig(names: JobNames, provider: HostPostgres, subscriber: HostPostgres, extra: string[], repairDir: string): string {
  return [
    "[londiste]",
    `job_name = ${names.jobName}`,
    `provider_db = ${provider.serviceUrl(names.providerDb)}`,
    `subscriber_db = ${subscriber.serviceUrl(names.subscriberDb)}`,
    `pgq_queue_name = ${names.queue}`,
    `nats_url = nats://127.0.0.1:${NATS_PORT}`,
    `subject_prefix = ${names.subjectPrefix}`,
    "loop_delay = 0.2",
    "state_stream_replicas = 3",
    `repair_dir = ${repairDir}`,
    ...extra,
    "",
  ].join("\n");
}

/** The [pgqadm] config of the ticker on its host. */
export function tickerConfig(names: JobNames, provider: HostPostgres): string {
  return [
    "[pgqadm]",
    `job_name = ${names.jobName}_ticker`,
    `db = ${provider.serviceUrl(names.providerDb)}`,
    `nats_url = nats://127.0.0.1:${NATS_PORT}`,
    `subject_prefix = ${names.subjectPrefix}`,
    "loop_delay = 0.1",
    "maint_delay = 2",
    "standby_delay = 0.2",
    "command_timeout = 5",
    "",
  ].join("\n");
}
