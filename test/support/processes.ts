/**
 * The process harness of the end-to-end tests: services (ticker, replay, copy, ...) run as
 * their own OS processes with their output captured; every process a test file starts is
 * killed when the test (or, when started in beforeAll, the file) ends, even when the test
 * failed or a later hook hangs; nothing outlives the run:
 *
 *  - useProcessCleanup() registers the hooks that kill (SIGKILL first, other cleanup after);
 *  - a test worker kills its children when it exits, is stopped by vitest (SIGTERM) or
 *    loses the vitest process (Ctrl-C), and notes those children for the teardown;
 *  - each child's pid is recorded under the run's directory (global-setup.ts), whose
 *    teardown kills any still alive and fails the run, as it does for the noted ones.
 *
 *   useProcessCleanup();
 *   const p = new ServiceProcess("replay", process.execPath, [LAUNCHER, conf, "replay"]);
 *   await p.waitForLog("active: this instance replays the job");
 */
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeEach, inject } from "vitest";
import { childLine, CHILDREN_FILE, KILLED_AT_EXIT_FILE } from "./leftovers.ts";
import { MachineClock, sleep } from "./wait.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Bound of the cleanup hooks: far above what killing takes, so they cannot time out before it. */
export const CLEANUP_HOOK_TIMEOUT_MS = 180_000;

// ------------------------------------------------------------------ the run's record of children

function runDir(): string | undefined {
  try {
    return inject("runDir");
  } catch {
    return undefined; // outside a run with the global setup (e.g. the unit tier): nothing to record to
  }
}

/** Records a child in the run's list, so the global teardown finds it if it outlives its test file. */
export function recordChild(child: ChildProcess, label: string): void {
  const dir = runDir();
  if (!dir || child.pid === undefined) return;
  worker.runDir = dir;
  worker.labels.set(child.pid, label);
  appendFileSync(join(dir, CHILDREN_FILE), childLine(child.pid, label));
}

// ------------------------------------------------------------------ children of this worker

interface WorkerChildren {
  live: Set<ChildProcess>;
  labels: Map<number, string>;
  runDir?: string;
}

const GLOBAL_KEY = Symbol.for("skytools.test.children");

/** Children of this worker process, shared by every module instance loaded in it. */
const worker: WorkerChildren = ((globalThis as Record<symbol, WorkerChildren | undefined>)[GLOBAL_KEY] ??= installWorkerGuard());

/**
 * Kills the worker's children when it exits, also when vitest stops it with SIGTERM (which
 * skips "exit" handlers), and when the vitest process that forked it is gone (its channel to
 * the worker closes: after a Ctrl-C the worker would otherwise go on running its test, and
 * its children with it). A child still alive then escaped its test file's cleanup: it is
 * noted in the run's directory, and the global teardown (if it runs) fails the run over it.
 */
function installWorkerGuard(): WorkerChildren {
  const state: WorkerChildren = { live: new Set(), labels: new Map() };
  const killLive = () => {
    for (const c of state.live) {
      c.kill("SIGKILL");
      if (state.runDir && c.pid !== undefined) {
        appendFileSync(join(state.runDir, KILLED_AT_EXIT_FILE), childLine(c.pid, state.labels.get(c.pid) ?? "?"));
      }
    }
    state.live.clear();
  };
  process.once("exit", killLive);
  process.once("SIGTERM", () => {
    killLive();
    process.exit(143);
  });
  if (process.connected) {
    process.once("disconnect", () => {
      killLive();
      process.exit(1);
    });
  }
  return state;
}

// ------------------------------------------------------------------ temp dirs

const tempDirs: string[] = [];

/** A fresh temp directory, removed when the file's afterAll of useProcessCleanup runs. */
export function makeTempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `skytools-test-${label}-`));
  tempDirs.push(dir);
  return dir;
}

// ------------------------------------------------------------------ processes

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Processes of this file not reaped yet. */
const live = new Set<ServiceProcess>();
/** Processes started by the running test (killed in afterEach); undefined outside a test. */
let testScope: ServiceProcess[] | undefined;
/** Processes started outside a test (beforeAll), killed in afterAll; also kept for failure dumps. */
const fileScope: ServiceProcess[] = [];

/** Default bound of waitForLog / waitForExit, in machine time. */
const DEFAULT_WAIT_MS = 10_000;

/**
 * Bound for a service's first log lines after it was started (machine time): a node start
 * plus loading the TypeScript sources takes seconds when the machine is busy.
 */
export const SERVICE_START_MS = 60_000;

/** A long-running child process whose stdout/stderr are captured; stdout JSON lines are parsed as log lines. */
export class ServiceProcess {
  readonly child: ChildProcess;
  readonly label: string;
  /** stdout and stderr interleaved, as received. */
  output = "";
  /** Parsed JSON log lines from stdout. */
  readonly lines: LogLine[] = [];
  exitInfo: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  private stdoutRest = "";
  private readonly listeners = new Set<() => void>();

  constructor(label: string, command: string, args: string[], env?: NodeJS.ProcessEnv) {
    this.label = label;
    this.child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    recordChild(this.child, label);
    worker.live.add(this.child);
    live.add(this);
    (testScope ?? fileScope).push(this);
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      this.output += chunk;
      this.stdoutRest += chunk;
      const parts = this.stdoutRest.split("\n");
      this.stdoutRest = parts.pop()!;
      for (const part of parts) {
        if (!part.startsWith("{")) continue;
        try {
          this.lines.push(JSON.parse(part) as LogLine);
        } catch {
          // not a log line
        }
      }
      this.notify();
    });
    this.child.stderr!.on("data", (chunk: string) => {
      this.output += chunk;
      this.notify();
    });
    this.exited = new Promise<ExitInfo>((resolve) => {
      const gone = (info: ExitInfo) => {
        this.exitInfo = info;
        live.delete(this);
        worker.live.delete(this.child);
        this.notify();
        resolve(info);
      };
      this.child.once("exit", (code, signal) => gone({ code, signal }));
      this.child.once("error", (error) => {
        this.output += `\n[spawn error] ${error.message}\n`;
        gone({ code: null, signal: null });
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  private notify() {
    for (const l of [...this.listeners]) l();
  }

  /** Last `n` lines of output, for failure messages. */
  tail(n = 40): string {
    const all = this.output.split("\n");
    return all.slice(-n).join("\n");
  }

  /** Log lines whose msg contains `text` (or matches it). */
  logs(text: string | RegExp): LogLine[] {
    return this.lines.filter((l) => typeof l.msg === "string" && (typeof text === "string" ? l.msg.includes(text) : text.test(l.msg)));
  }

  /**
   * Waits for a log line whose msg contains/matches `text` (and passes `where`), among lines
   * number `from` onwards (default: any line so far). Fails when the process exits first, or
   * after `timeoutMs` of machine time (see wait.ts).
   */
  waitForLog(
    text: string | RegExp,
    options: { timeoutMs?: number; from?: number; where?: (l: LogLine) => boolean } = {},
  ): Promise<LogLine> {
    const { timeoutMs = DEFAULT_WAIT_MS, from = 0, where } = options;
    const find = () =>
      this.lines
        .slice(from)
        .find((l) => typeof l.msg === "string" && (typeof text === "string" ? l.msg.includes(text) : text.test(l.msg)) && (!where || where(l)));
    return this.until(timeoutMs, `log "${String(text)}"`, () => {
      const line = find();
      if (line) return line;
      if (!this.running) throw new Error(`${this.label} exited (${JSON.stringify(this.exitInfo)}) before logging "${String(text)}"; output:\n${this.tail()}`);
      return undefined;
    });
  }

  /** Waits for the process to exit, failing after `timeoutMs` of machine time. */
  waitForExit(timeoutMs = DEFAULT_WAIT_MS): Promise<ExitInfo> {
    return this.until(timeoutMs, "exit", () => this.exitInfo);
  }

  /** Resolves with check()'s first value, checked on every output and every 100 ms; rejects on a throw or the bound. */
  private until<T>(timeoutMs: number, what: string, check: () => T | undefined): Promise<T> {
    const clock = new MachineClock();
    return new Promise<T>((resolve, reject) => {
      const run = () => {
        try {
          const v = check();
          if (v !== undefined) {
            done();
            resolve(v);
          } else if (clock.elapsed() > timeoutMs) {
            done();
            reject(new Error(`${this.label} did not ${what} within ${clock.describe()}; output:\n${this.tail()}`));
          }
        } catch (error) {
          done();
          reject(error as Error);
        }
      };
      const timer = setInterval(run, 100);
      const done = () => {
        clearInterval(timer);
        this.listeners.delete(run);
      };
      this.listeners.add(run);
      run();
    });
  }

  /**
   * Sends `signal` (default SIGKILL) and waits until the process is gone. Any other signal
   * is followed by SIGCONT (a stopped process handles it) and, when the process has not
   * exited after `graceMs` of machine time, by SIGKILL.
   */
  async kill(signal: NodeJS.Signals = "SIGKILL", graceMs = 30_000): Promise<ExitInfo> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    if (signal === "SIGKILL") return this.exited;
    this.child.kill("SIGCONT");
    const clock = new MachineClock();
    while (this.running && clock.elapsed() < graceMs) await Promise.race([this.exited, sleep(100)]);
    if (this.running) this.child.kill("SIGKILL");
    return this.exited;
  }
}

/**
 * Runs `start` so that the processes it starts belong to the file (killed
 * after the file, not after the running test): services that later tests
 * of the file go on using, started again by one of them.
 */
export function startForFile<T>(start: () => T): T {
  const saved = testScope;
  testScope = undefined;
  try {
    return start();
  } finally {
    testScope = saved;
  }
}

function dump(processes: ServiceProcess[]) {
  for (const p of processes) {
    console.error(
      `----- ${p.label} (pid ${p.pid}, ${p.running ? "running" : `exit ${JSON.stringify(p.exitInfo)}`}) output, last 60 lines -----\n${p.tail(60)}`,
    );
  }
}

/** SIGKILLs the processes and waits (boundedly) for them to be reaped. */
async function killAll(processes: ServiceProcess[]): Promise<void> {
  for (const p of processes) if (p.running) p.child.kill("SIGKILL");
  const reaped = Promise.all(processes.map((p) => p.exited));
  await Promise.race([reaped, sleep(15_000)]);
  const left = processes.filter((p) => p.running);
  if (left.length > 0) console.error(`[processes] not reaped 15 s after SIGKILL: ${left.map((p) => `${p.label} (pid ${p.pid})`).join(", ")}`);
}

/** Kills every process this test file started that is still running. */
export function killProcesses(): Promise<void> {
  return killAll([...fileScope, ...live]);
}

// ------------------------------------------------------------------ other things to stop

/** Something a test starts and must stop (an event producer): stopped after each test and after the file. */
export interface Stoppable {
  stop(): Promise<unknown>;
}

const stoppables = new Set<Stoppable>();

/** Stops `thing` in the cleanup hooks unless released first; returns the release. */
export function stopAtCleanup(thing: Stoppable): () => void {
  stoppables.add(thing);
  return () => stoppables.delete(thing);
}

async function stopAll(): Promise<void> {
  const all = [...stoppables];
  stoppables.clear();
  const stopped = Promise.all(all.map((s) => s.stop().catch((error: unknown) => console.error("[processes] stop failed:", error))));
  await Promise.race([stopped, sleep(30_000)]);
}

/**
 * Registers the hooks of a test file: processes started inside a test are killed after it
 * (also when it fails), those started in beforeAll after the file; on a failed test the output
 * of every process it could have involved is printed. The kill comes first; then producers
 * still running are stopped and temp dirs removed. Call it at the top of the file: with the
 * hook order of vitest.config.ts (sequence.hooks "list") its afterAll runs before the file's
 * own (which drops databases), so a hanging drop cannot keep a process alive.
 */
export function useProcessCleanup(): void {
  beforeEach(() => {
    testScope = [];
  });
  afterEach(async (ctx) => {
    const mine = testScope ?? [];
    testScope = undefined;
    if (ctx.task.result?.state === "fail") dump([...fileScope, ...mine]);
    await killAll(mine);
    // Tests that run concurrently stop their own producers; this catches those of a failed test.
    if (!ctx.task.concurrent) await stopAll();
  }, CLEANUP_HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await killProcesses();
    fileScope.length = 0;
    await stopAll();
    for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }, CLEANUP_HOOK_TIMEOUT_MS);
}
