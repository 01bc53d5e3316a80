/**
 * Watches for load that is not the benchmark's own while a workload runs,
 * so that a disturbed figure can be told from a real one.
 *
 * Every `intervalMs` it reads /proc: CPU ticks of every process, and the
 * machine's steal time. A process is "ours" when it is this process, one
 * of its ancestors (npm, tsx) or descendants (the read children, pgbench),
 * or a PostgreSQL process that does not serve a database other than the
 * benchmark's (our backends, and the server's own background workers). Everything else is foreign:
 * other users' processes and PostgreSQL backends of other databases.
 * Processes that live less than one interval are missed, so this is a
 * lower bound.
 */
import { readdirSync, readFileSync } from "node:fs";
import type pg from "pg";

const CLK_TCK = 100;

interface ProcTicks {
  comm: string;
  ppid: number;
  ticks: number;
}

function readProcesses(): Map<number, ProcTicks> {
  const out = new Map<number, ProcTicks>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      // fields[0] = state (field 3); utime, stime are fields 14, 15.
      out.set(Number(entry), { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** [busy ticks, steal ticks, all ticks] of the whole machine. */
function readCpuTotals(): [number, number, number] {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
    return [user + nice + system + irq + softirq, steal, user + nice + system + idle + iowait + irq + softirq + steal];
  } catch {
    return [0, 0, 0];
  }
}

export interface Disturbance {
  /** Average CPU cores used by foreign processes during the workload. */
  foreignCoresAvg: number;
  /** Highest one-interval average of the same. */
  foreignCoresMax: number;
  /** Machine steal time, percent of all CPU time. */
  stealPercent: number;
  /** Highest count of active backends of other databases seen. */
  otherBackendsMax: number;
  /** Foreign processes that used the most CPU, "comm:seconds". */
  top: string[];
  loadAverage1m: number;
}

export class Monitor {
  private timer: NodeJS.Timeout | undefined;
  private prev: Map<number, ProcTicks> | undefined;
  private prevAt = 0;
  private otherDbPids = new Set<number>();
  private otherBackends = 0;
  private sampling = false;
  // accumulators for the current workload
  private foreignTicks = 0;
  private foreignMax = 0;
  private wallSeconds = 0;
  private byComm = new Map<string, number>();
  private cpuAtStart: [number, number, number] = [0, 0, 0];
  private backendsMax = 0;

  /** `databases`: the benchmark's own databases; the set may grow while the monitor runs. */
  constructor(
    private readonly admin: pg.ClientBase,
    private readonly databases: ReadonlySet<string>,
    private readonly intervalMs = 500,
  ) {}

  /** Starts a workload's window. */
  begin(): void {
    this.stop();
    this.foreignTicks = 0;
    this.foreignMax = 0;
    this.wallSeconds = 0;
    this.byComm.clear();
    this.backendsMax = 0;
    this.cpuAtStart = readCpuTotals();
    this.prev = readProcesses();
    this.prevAt = performance.now();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  /** Ends the window and returns what was seen in it. */
  async end(): Promise<Disturbance> {
    this.stop();
    await this.sample();
    const cpu = readCpuTotals();
    const all = cpu[2] - this.cpuAtStart[2];
    const top = [...this.byComm.entries()]
      .sort((a, b) => b[1] - a[1])
      .filter(([, t]) => t >= CLK_TCK / 10)
      .slice(0, 3)
      .map(([comm, t]) => `${comm}:${(t / CLK_TCK).toFixed(1)}s`);
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      foreignCoresAvg: round(this.wallSeconds > 0 ? this.foreignTicks / CLK_TCK / this.wallSeconds : 0),
      foreignCoresMax: round(this.foreignMax),
      stealPercent: round(all > 0 ? ((cpu[1] - this.cpuAtStart[1]) / all) * 100 : 0),
      otherBackendsMax: this.backendsMax,
      top,
      loadAverage1m: round(Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])),
    };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async refreshOtherBackends(): Promise<void> {
    const { rows } = await this.admin.query<{ pid: number; active: boolean }>(
      `select pid, state = 'active' as active from pg_stat_activity
        where datname is not null and datname <> all($1::text[]) and pid <> pg_backend_pid()`,
      [[...this.databases]],
    );
    this.otherDbPids = new Set(rows.map((r) => r.pid));
    this.otherBackends = rows.filter((r) => r.active).length;
  }

  private async sample(): Promise<void> {
    if (this.sampling || !this.prev) return;
    this.sampling = true;
    try {
      await this.refreshOtherBackends().catch(() => undefined);
      this.backendsMax = Math.max(this.backendsMax, this.otherBackends);
      const now = readProcesses();
      const at = performance.now();
      const seconds = (at - this.prevAt) / 1000;
      let foreign = 0;
      for (const [pid, p] of now) {
        const before = this.prev.get(pid);
        // ticks survive exec; a drop means the pid was reused by a new process
        const delta = before && p.ticks >= before.ticks ? p.ticks - before.ticks : p.ticks;
        if (delta <= 0 || this.isOurs(pid, now)) continue;
        foreign += delta;
        this.byComm.set(p.comm, (this.byComm.get(p.comm) ?? 0) + delta);
      }
      this.foreignTicks += foreign;
      this.wallSeconds += seconds;
      if (seconds > 0) this.foreignMax = Math.max(this.foreignMax, foreign / CLK_TCK / seconds);
      this.prev = now;
      this.prevAt = at;
    } finally {
      this.sampling = false;
    }
  }

  private isOurs(pid: number, procs: Map<number, ProcTicks>): boolean {
    const p = procs.get(pid)!;
    if (p.comm === "postgres") return !this.otherDbPids.has(pid);
    // kernel threads (children of kthreadd) are nobody's in particular
    if (pid === 2 || p.ppid === 2) return true;
    // this process, its descendants (read children) and its ancestors (npm, tsx)
    if (this.ancestors(process.pid, procs).has(pid)) return true;
    return this.ancestors(pid, procs).has(process.pid);
  }

  private ancestors(pid: number, procs: Map<number, ProcTicks>): Set<number> {
    const out = new Set<number>();
    for (let cur: number | undefined = pid; cur && cur > 1 && !out.has(cur); cur = procs.get(cur)?.ppid) {
      out.add(cur);
    }
    return out;
  }
}
