/**
 * The demo's service processes (ticker, replay, copy workers), each its
 * own OS process with its output in a log file, and the command-line
 * tools run the way a user runs them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const LONDISTE = join(REPO_ROOT, "services/cli/londiste.js");
export const PGQADM = join(REPO_ROOT, "services/cli/pgqadm.js");

/** A long-running service; stdout and stderr go to `log`. */
export class Service {
  readonly child: ChildProcess;
  exited = false;
  exitCode: number | null = null;
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    readonly log: string,
    launcher: string,
    args: string[],
  ) {
    const fd = openSync(log, "a");
    try {
      // detached: its own process group, so Ctrl-C reaches the demo, which stops the services in order.
      this.child = spawn(process.execPath, [launcher, ...args], { cwd: REPO_ROOT, detached: true, stdio: ["ignore", fd, fd] });
    } finally {
      closeSync(fd);
    }
    this.done = new Promise((resolve) => {
      this.child.once("exit", (code) => {
        this.exited = true;
        this.exitCode = code;
        resolve();
      });
      this.child.once("error", () => {
        this.exited = true;
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM (the services stop after the current unit of work), SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.exited) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.done;
    clearTimeout(timer);
  }

  /** The last lines of its log, for error messages. */
  tail(lines = 20): string {
    try {
      return readFileSync(this.log, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node LAUNCHER ARGS...` to completion. */
export function runCli(launcher: string, args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [launcher, ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${error.message}\n` });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
