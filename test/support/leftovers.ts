/**
 * The end-of-run check that no child process outlived the tests: the process harness
 * (processes.ts) appends `pid starttime label worker-pid` for each child it starts to the
 * run's `children` file; the global teardown kills every one still alive (same pid and
 * same start time, so a pid reused by an unrelated process is left alone), throws and sets
 * a non-zero exit code, which fails the run. Free of vitest imports: the global setup loads it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The file, in the run's directory, listing the children. */
export const CHILDREN_FILE = "children";
/** The file listing children a test worker had to kill as it exited: their test file did not. */
export const KILLED_AT_EXIT_FILE = "killed-at-worker-exit";

interface Recorded {
  pid: number;
  start: string;
  label: string;
  worker: string;
}

/** State and start time (clock ticks since boot) of a process from /proc/PID/stat; undefined when it is gone. */
function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0]!, start: rest[19]! };
  } catch {
    return undefined;
  }
}

/** The line recording a child: its pid, its start time (tells a pid reused later apart), a label, this worker's pid. */
export function childLine(pid: number, label: string): string {
  return `${pid} ${procStat(pid)?.start ?? "?"} ${label.replace(/\s+/g, "_") || "?"} ${process.pid}\n`;
}

/** Recorded children that are still running (zombies are gone already, only not reaped). */
export function aliveChildren(runDir: string): Recorded[] {
  let text: string;
  try {
    text = readFileSync(join(runDir, CHILDREN_FILE), "utf8");
  } catch {
    return []; // nothing recorded
  }
  const out: Recorded[] = [];
  for (const line of text.split("\n")) {
    const [pid, start, label, worker] = line.split(" ");
    if (!pid || !start) continue;
    const now = procStat(Number(pid));
    if (!now || now.state === "Z" || now.state === "X") continue;
    if (start !== "?" && now.start !== start) continue; // the pid belongs to another process now
    out.push({ pid: Number(pid), start, label: label ?? "?", worker: worker ?? "?" });
  }
  return out;
}

/** Children a test worker killed as it exited, as `label (pid N)`. */
function killedAtWorkerExit(runDir: string): string[] {
  try {
    return readFileSync(join(runDir, KILLED_AT_EXIT_FILE), "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => {
        const [pid, , label, worker] = l.split(" ");
        return `${label} (pid ${pid}, test worker ${worker})`;
      });
  } catch {
    return [];
  }
}

/**
 * Kills recorded children still alive, and throws naming them and those a worker had to
 * kill at its exit; returns quietly when there is none.
 */
export async function killLeftoverChildren(runDir: string): Promise<void> {
  // A worker stopped just now may still be killing its own children: give them a moment.
  let alive = aliveChildren(runDir);
  for (let i = 0; i < 20 && alive.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    alive = aliveChildren(runDir);
  }
  for (const c of alive) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const atExit = killedAtWorkerExit(runDir);
  if (alive.length === 0 && atExit.length === 0) return;
  const problems = [
    ...(alive.length > 0
      ? [`${alive.length} outlived the run and were killed now: ${alive.map((c) => `${c.label} (pid ${c.pid}, test worker ${c.worker})`).join(", ")}`]
      : []),
    ...(atExit.length > 0 ? [`${atExit.length} were still running when their test worker exited: ${atExit.join(", ")}`] : []),
  ];
  const message =
    `Child processes escaped their test file's cleanup: ${problems.join("; ")}. ` +
    "A test that starts a process must kill it (useProcessCleanup() in test/support/processes.ts).";
  // vitest only logs an error thrown by a global teardown ("error during close") and keeps exit
  // code 0; the exit code makes the run fail.
  process.exitCode = 1;
  throw new Error(message);
}
