/**
 * `londiste CONF top` as a user sees it: in a terminal (a tmux pane on a
 * private tmux server, read back with capture-pane, keys sent with
 * send-keys) against a real job whose ticker, replay and copy worker run
 * as their own processes. A table added while top runs shows up and goes
 * on the screen and reaches `ok`, with its last transition; `q` and Ctrl-C end top with
 * exit 0 and give the terminal back (alternate screen left, cursor shown).
 * With stdout not a terminal it prints plain snapshots, no escape codes.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { type ServiceProcess, stopAtCleanup, useProcessCleanup } from "../support/processes.ts";
import { waitFor, waitForProgress } from "../support/wait.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

const TABLE = "public.top_t";
/** Each test runs its own tmux server (the cleanup after a test stops it). */
let socket = "";
let job: LondisteJob;
let replay: ServiceProcess;
let tmuxConf: string;
/** Pids of the shells run in panes: killed at cleanup whatever tmux does (top gets a SIGHUP from its terminal). */
const panePids: number[] = [];

function tmux(...args: string[]): string {
  return execFileSync("tmux", ["-L", socket, "-f", tmuxConf, ...args], { encoding: "utf8", env: { ...process.env, LANG: "C.UTF-8" } });
}

/** The pane's text as shown now. */
const screen = (session: string) => tmux("capture-pane", "-p", "-t", session);

/**
 * Starts `londiste CONF top` in a new 150x45 session on a tmux server of
 * this test; the cleanup after the test kills the command and the server.
 */
function startTop(session: string): void {
  socket = `skytools-top-${process.pid}-${session}`;
  const server = socket;
  stopAtCleanup({
    stop: async () => {
      for (const pid of panePids.splice(0)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      try {
        execFileSync("tmux", ["-L", server, "kill-server"], { stdio: "ignore" });
      } catch {
        // no server left
      }
    },
  });
  // The shell stays after top (so the terminal's state after it can be read) and tells its exit status.
  const top = [process.execPath, LONDISTE_LAUNCHER, job.conf, "top"].map((w) => `'${w}'`).join(" ");
  tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "45", `${top}; echo "top exited with $?"; exec sleep 3600`);
  panePids.push(Number(tmux("display-message", "-p", "-t", session, "#{pane_pid}").trim()));
}

/** Waits until top has exited (the pane's shell says so); its exit status. */
async function waitTopExit(session: string): Promise<number> {
  const exit = await waitFor(() => /top exited with (\d+)/.exec(screen(session))?.[1], { timeoutMs: 20_000, what: `top in ${session} to exit` }).catch(
    (error: unknown) => {
      throw new Error(`${(error as Error).message}; the pane shows:\n${screen(session)}`);
    },
  );
  return Number(exit);
}

beforeAll(async () => {
  try {
    execFileSync("tmux", ["-V"], { encoding: "utf8" });
  } catch {
    throw new Error("tmux is not installed: this test drives `londiste CONF top` in a tmux pane (apt-get install tmux; .ci/run installs it)");
  }
  job = await createLondisteJob({ label: "top_tmux" });
  // No status bar in the captures.
  tmuxConf = join(job.dir, "tmux.conf");
  writeFileSync(tmuxConf, "set -g status off\n");
  const ddl = "create table public.top_t (id int primary key, v text)";
  await job.provider.query(`${ddl}; insert into public.top_t select g, 'row ' || g from generate_series(1, 2000) g; analyze public.top_t`);
  await job.subscriber.query(ddl);
  replay = job.startReplay();
  await replay.waitForLog("serving admin commands on NATS", { timeoutMs: 60_000 });
  await installJob(job);
  expectOk(await job.londiste("provider", "add", TABLE));
  const copy = job.start("top-copy", "copy");
  await copy.waitForLog("copy worker starting", { timeoutMs: 60_000 });
});

afterAll(async () => {
  await job?.drop();
});

/** The table's row on the screen (its state is the second column), or undefined. */
const tableLine = (session: string) =>
  screen(session)
    .split("\n")
    .find((l) => l.startsWith(`${TABLE} `));

describe("londiste CONF top in a terminal", () => {
  it("shows a table added meanwhile reach ok with its last change, and quits on q giving the terminal back", async () => {
    startTop("main");
    await waitFor(() => screen("main").includes(`londiste top: job ${job.jobName}`), { timeoutMs: 60_000, what: "top's header" });
    await waitFor(() => /services: .*replay .*\(active\)/.test(screen("main")), { timeoutMs: 30_000, what: "replay among the services" });
    expectOk(await job.londiste("subscriber", "add", TABLE));
    await waitForProgress({
      what: `${TABLE} to show state ok in top`,
      measure: () => tableLine("main")?.split(/\s+/)[1],
      done: (state) => state === "ok",
    });
    // The last change came from the JetStream state events: an event and who made it, not "-".
    await waitFor(() => / by (replay|copy|admin)\b/.test(tableLine("main") ?? ""), { timeoutMs: 30_000, what: "the table's last change" });
    // The lag comes with the next status reply (every 2 s); the state change may come first.
    await waitFor(() => /^lag \d/m.test(screen("main")), { timeoutMs: 30_000, what: "the lag figure" });
    const shown = screen("main");
    expect(shown).toContain("(q quits)");

    tmux("send-keys", "-t", "main", "q");
    expect(await waitTopExit("main")).toBe(0);
    // Back on the normal screen with the cursor on: none of top's view is left.
    expect(screen("main")).not.toContain("londiste top:");
    expect(tmux("display-message", "-p", "-t", "main", "#{cursor_flag} #{alternate_on}").trim()).toBe("1 0");
  });

  it("quits on Ctrl-C with exit 0", async () => {
    startTop("ctrlc");
    await waitFor(() => tableLine("ctrlc") !== undefined, { timeoutMs: 60_000, what: `top to show ${TABLE}` });
    tmux("send-keys", "-t", "ctrlc", "C-c");
    expect(await waitTopExit("ctrlc")).toBe(0);
    expect(screen("ctrlc")).not.toContain("londiste top:");
  });
});

describe("londiste CONF top with stdout not a terminal", () => {
  it("prints plain snapshots without escape codes and stops on SIGINT with exit 0", async () => {
    const top = job.start("top-plain", "top");
    await waitFor(() => new RegExp(`^${TABLE.replace(".", "\\.")}\\s+ok\\b`, "m").test(top.output), {
      timeoutMs: 60_000,
      what: "a plain snapshot with the table in ok",
    });
    expect(top.output).toMatch(/^--- \d{4}-\d\d-\d\dT/m);
    expect(top.output).not.toContain("\x1b");
    const exit = await top.kill("SIGINT");
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
