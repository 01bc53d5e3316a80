/**
 * The product's processes for bench/copy.ts: the ticker (`pgqadm CONF
 * ticker`), replay and the copy worker (`londiste CONF replay|copy`), each
 * its own Node process started through the launchers in services/cli, as a
 * user starts them; their JSON log lines are kept. `londisteCli` runs one
 * `londiste CONF ...` command to completion.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const LAUNCHERS = {
  pgqadm: fileURLToPath(new URL("../services/cli/pgqadm.js", import.meta.url)),
  londiste: fileURLToPath(new URL("../services/cli/londiste.js", import.meta.url)),
};

export interface LogLine {
  msg?: string;
  [key: string]: unknown;
}

export class ServiceChild {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  private output = "";
  private rest = "";
  private readonly exited: Promise<void>;

  constructor(
    readonly label: string,
    [launcher, ...args]: ["pgqadm" | "londiste", ...string[]],
    /** Node's own options for the child (e.g. --cpu-prof). */
    nodeArgs: string[] = [],
  ) {
    this.child = spawn(process.execPath, [...nodeArgs, LAUNCHERS[launcher], ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdout!.setEncoding("utf8");
    this.child.stderr!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      this.keep(chunk);
      this.rest += chunk;
      const parts = this.rest.split("\n");
      this.rest = parts.pop()!;
      for (const part of parts) {
        if (!part.startsWith("{")) continue;
        try {
          this.lines.push(JSON.parse(part) as LogLine);
        } catch {
          // not a log line
        }
      }
    });
    this.child.stderr!.on("data", (chunk: string) => this.keep(chunk));
  }

  private keep(chunk: string): void {
    this.output = (this.output + chunk).slice(-200_000);
  }

  tail(n: number): string {
    return this.output.split("\n").slice(-n).join("\n");
  }

  async waitForLog(msg: string, timeoutMs: number): Promise<LogLine> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines.find((l) => l.msg === msg);
      if (line) return line;
      if (this.child.exitCode !== null) throw new Error(`${this.label} exited (${this.child.exitCode}) before logging "${msg}":\n${this.tail(30)}`);
      if (Date.now() > until) throw new Error(`${this.label}: no "${msg}" within ${timeoutMs} ms:\n${this.tail(30)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, then SIGKILL after 5 s. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Runs `londiste CONF ARGS...` to completion; throws on a non-zero exit. */
export function londisteCli(conf: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [LAUNCHERS.londiste, conf, ...args],
      { cwd: REPO_ROOT, timeout: 120_000, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`londiste ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}
