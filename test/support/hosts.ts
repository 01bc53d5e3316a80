/**
 * Several "hosts" on this machine as Linux network namespaces, for the
 * multi-host fault tests (test/multihost/) and `npm run hosts -- up|down`.
 *
 *   switch namespace  <run>-sw : bridge br0, one port per host
 *   host namespace    <run>-h1 : lo + eth0 (10.213.0.11/24), its veth peer is port h1 of br0
 *   ...
 *
 * The bridge lives in a namespace of its own and the veth pairs are made
 * inside the namespaces, so nothing is ever added to, or routed through,
 * the machine's own interfaces; the 10.213.0.0/24 addresses exist only
 * in these namespaces (two runs use the same addresses on separate
 * switches). Names are `skyh<pid>x<n>-...`, unique per process and call,
 * so parallel runs do not collide, and a run whose process is gone is
 * swept by the next one (sweepStaleHosts).
 *
 * A cut (`cut(host)`) sets the host's switch port down: the host's packets
 * vanish silently, as when a cable is pulled, and TCP on either side only
 * learns of it through its own timeouts. `heal(host)` sets it up again.
 *
 * Free of vitest imports: the hosts script loads it too.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Prefix of every namespace the harness makes; the stale sweep only ever touches these. */
export const NETNS_PREFIX = "skyh";
export const SUBNET = "10.213.0";
const SWITCH = "sw";
const BRIDGE = "br0";
const HOST_IF = "eth0";

let made = 0;

async function ip(args: string[]): Promise<string> {
  try {
    return (await run("ip", args, { encoding: "utf8" })).stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")} failed: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

/**
 * Throws, saying why, when this process cannot make network namespaces
 * (not root, no `ip`, no veth or bridge support): the multi-host tests
 * fail with that reason rather than being skipped.
 */
export async function checkNamespaceSupport(): Promise<void> {
  const why = (text: string) =>
    new Error(
      `The multi-host tests need Linux network namespaces with veth and bridge devices (run as root with iproute2): ${text}`,
    );
  if (process.platform !== "linux") throw why(`this is ${process.platform}, not Linux`);
  if (process.getuid?.() !== 0) throw why(`running as uid ${process.getuid?.()}, not root`);
  const probe = `${NETNS_PREFIX}${process.pid}probe${made++}`;
  try {
    await ip(["netns", "add", probe]);
  } catch (error) {
    throw why((error as Error).message);
  }
  try {
    await ip(["-n", probe, "link", "add", "name", "pbr", "type", "bridge"]);
    await ip(["-n", probe, "link", "add", "name", "pa", "type", "veth", "peer", "name", "pb"]);
  } catch (error) {
    throw why((error as Error).message);
  } finally {
    await ip(["netns", "del", probe]).catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Namespaces of the harness (by prefix), with the pid of the process that made them. */
async function harnessNamespaces(): Promise<Array<{ name: string; owner: number }>> {
  const out = await ip(["netns", "list"]);
  const list: Array<{ name: string; owner: number }> = [];
  for (const line of out.split("\n")) {
    const name = line.trim().split(/\s+/)[0];
    const m = name ? new RegExp(`^${NETNS_PREFIX}(\\d+)[a-z]`).exec(name) : null;
    if (m && name) list.push({ name, owner: Number(m[1]) });
  }
  return list;
}

/** Kills every process inside a namespace (SIGKILL) and deletes it. */
async function removeNamespace(name: string): Promise<void> {
  const pids = await ip(["netns", "pids", name]).catch(() => "");
  for (const p of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {
      // gone already
    }
  }
  await ip(["netns", "del", name]).catch(() => {});
}

/** Removes every namespace of the run `id` (`<id>-...`), with the processes inside; returns the names. */
export async function removeHosts(id: string): Promise<string[]> {
  const out = await ip(["netns", "list"]);
  const names = out
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${id}-`));
  names.sort((a, b) => Number(a.endsWith(`-${SWITCH}`)) - Number(b.endsWith(`-${SWITCH}`)));
  for (const n of names) await removeNamespace(n);
  return names;
}

/**
 * Removes the harness's namespaces whose making process is gone (a run
 * killed before its teardown), with the processes still inside them; with
 * `all`, every namespace of the harness (`npm run hosts -- down`). Returns
 * the names removed.
 */
export async function sweepStaleHosts(all = false): Promise<string[]> {
  const gone = (await harnessNamespaces()).filter((n) => all || !pidAlive(n.owner));
  // Host namespaces first (their processes hold the data), the switch last.
  gone.sort((a, b) => Number(a.name.endsWith(`-${SWITCH}`)) - Number(b.name.endsWith(`-${SWITCH}`)));
  for (const n of gone) await removeNamespace(n.name);
  return gone.map((n) => n.name);
}

export interface HostInfo {
  name: string;
  /** Network namespace of the host. */
  ns: string;
  /** Its address on the switch. */
  addr: string;
}

/** The hosts of one run and their switch. */
export class HostNet {
  readonly hosts: ReadonlyMap<string, HostInfo>;
  private destroyed = false;

  private constructor(
    /** `skyh<pid>x<n>`: the run's namespace prefix. */
    readonly id: string,
    hosts: HostInfo[],
  ) {
    this.hosts = new Map(hosts.map((h) => [h.name, h]));
  }

  get switchNs(): string {
    return `${this.id}-${SWITCH}`;
  }

  host(name: string): HostInfo {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} (hosts: ${[...this.hosts.keys()].join(", ")})`);
    return h;
  }

  /** [command, args] that run `cmd args...` inside the host's namespace (the pid stays that of cmd: ip execs it). */
  command(host: string, cmd: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.host(host).ns, cmd, ...args]];
  }

  /** Runs a command inside the host's namespace to completion. */
  async exec(host: string, cmd: string, args: string[]): Promise<string> {
    const [c, a] = this.command(host, cmd, args);
    return (await run(c, a, { encoding: "utf8" })).stdout;
  }

  /** Cuts the host off: its switch port goes down (packets vanish both ways). */
  async cut(host: string): Promise<void> {
    await ip(["-n", this.switchNs, "link", "set", this.host(host).name, "down"]);
  }

  /** Connects the host again. */
  async heal(host: string): Promise<void> {
    await ip(["-n", this.switchNs, "link", "set", this.host(host).name, "up"]);
  }

  /**
   * Isolates the hosts' switch ports from each other (bridge port flag
   * `isolated`): they lose each other but still reach every other host.
   * `on = false` joins them again.
   */
  async isolate(hosts: string[], on = true): Promise<void> {
    for (const h of hosts) {
      await ip(["-n", this.switchNs, "link", "set", "dev", this.host(h).name, "type", "bridge_slave", "isolated", on ? "on" : "off"]);
    }
  }

  /**
   * Makes the switch and one namespace per host (names: letters and digits,
   * at most 15 characters: they name the switch ports), each with lo up and
   * eth0 at 10.213.0.(11 + index). `id` (default `skyh<pid>x<n>`, swept
   * once this process is gone) names the run; `npm run hosts` uses
   * `skyhdemo`, which outlives it and only `down` removes.
   */
  static async create(names: string[], id = `${NETNS_PREFIX}${process.pid}x${made++}`): Promise<HostNet> {
    await sweepStaleHosts();
    const hosts = names.map((name, i) => {
      if (!/^[a-z][a-z0-9]{0,14}$/.test(name)) throw new Error(`host name ${JSON.stringify(name)}: lowercase letters and digits, ≤ 15`);
      return { name, ns: `${id}-${name}`, addr: `${SUBNET}.${11 + i}` };
    });
    const net = new HostNet(id, hosts);
    try {
      await ip(["netns", "add", net.switchNs]);
      await ip(["-n", net.switchNs, "link", "add", "name", BRIDGE, "type", "bridge"]);
      await ip(["-n", net.switchNs, "link", "set", BRIDGE, "up"]);
      for (const h of hosts) {
        await ip(["netns", "add", h.ns]);
        await ip(["-n", h.ns, "link", "set", "lo", "up"]);
        // Made in the switch namespace, its peer straight into the host's: never in the root namespace.
        await ip(["-n", net.switchNs, "link", "add", "name", h.name, "type", "veth", "peer", "name", HOST_IF, "netns", h.ns]);
        await ip(["-n", net.switchNs, "link", "set", h.name, "master", BRIDGE]);
        await ip(["-n", net.switchNs, "link", "set", h.name, "up"]);
        await ip(["-n", h.ns, "addr", "add", `${h.addr}/24`, "dev", HOST_IF]);
        await ip(["-n", h.ns, "link", "set", HOST_IF, "up"]);
      }
    } catch (error) {
      await net.destroy();
      throw error;
    }
    return net;
  }

  /** Kills whatever still runs in the hosts and removes every namespace of the run. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const h of this.hosts.values()) await removeNamespace(h.ns);
    await removeNamespace(this.switchNs);
  }
}
