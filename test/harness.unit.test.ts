/**
 * The test harness without servers: waits that go by progress, the machine clock, the
 * process harness (kill with escalation, log waits), finding nats-server, and the
 * end-of-run check for child processes left behind.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { aliveChildren, childLine, CHILDREN_FILE, killLeftoverChildren } from "./support/leftovers.ts";
import { natsServerBin } from "./support/nats-server.ts";
import { ServiceProcess, useProcessCleanup } from "./support/processes.ts";
import { MachineClock, sleep, waitFor, waitForProgress } from "./support/wait.ts";

useProcessCleanup();

describe("waitForProgress", () => {
  it("waits past the stall window for as long as the value moves", async () => {
    let n = 0;
    const timer = setInterval(() => n++, 20);
    try {
      const v = await waitForProgress({ what: "n to reach 15", measure: () => n, done: (x) => x >= 15, stallMs: 100, intervalMs: 10 });
      expect(v).toBeGreaterThanOrEqual(15);
    } finally {
      clearInterval(timer);
    }
  });

  it("fails when nothing moved for the stall window, saying what it waited for and the last value", async () => {
    await expect(
      waitForProgress({ what: "the answer", measure: () => ({ answer: 41 }), done: (v) => v.answer === 42, stallMs: 200, intervalMs: 20 }),
    ).rejects.toThrow(/^no progress for [\d.]+ s machine time \([\d.]+ s wall\) waiting for the answer; last value \{"answer":41\}/);
  });

  it("counts a failing measure as no progress and reports its error", async () => {
    await expect(
      waitForProgress({
        what: "a row",
        measure: () => {
          throw new Error("connection refused");
        },
        done: () => true,
        stallMs: 100,
        intervalMs: 20,
      }),
    ).rejects.toThrow(/waiting for a row; last value \(none read\).*last error: connection refused/);
  });

  it("ends at once when done() throws", async () => {
    const clock = new MachineClock();
    await expect(
      waitForProgress({
        what: "commits",
        measure: () => 0,
        done: () => {
          throw new Error("writer failed");
        },
        stallMs: 60_000,
      }),
    ).rejects.toThrow("writer failed");
    expect(clock.wall()).toBeLessThan(5_000);
  });

  it("stops at limitMs even while the value moves", async () => {
    let n = 0;
    await expect(waitForProgress({ what: "never", measure: () => n++, done: () => false, limitMs: 150, intervalMs: 10 })).rejects.toThrow(
      /^not there after .* waiting for never/,
    );
  });
});

describe("the machine clock and waitFor", () => {
  it("counts at most wall time", async () => {
    const clock = new MachineClock();
    await sleep(120);
    expect(clock.elapsed()).toBeGreaterThan(0);
    expect(clock.elapsed()).toBeLessThanOrEqual(clock.wall());
  });

  it("waitFor fails after its bound with what it waited for", async () => {
    await expect(waitFor(() => false, { timeoutMs: 100, intervalMs: 10, what: "nothing" })).rejects.toThrow(/^timed out after .* waiting for nothing$/);
    await expect(waitFor(() => 7)).resolves.toBe(7);
  });
});

describe("ServiceProcess", () => {
  it("escalates to SIGKILL when a process ignores the signal it was sent", async () => {
    const p = new ServiceProcess("stubborn", "sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
    await waitFor(() => p.output.includes("ready"), { what: "the trap to be set" });
    const exit = await p.kill("SIGTERM", 300);
    expect(exit.signal).toBe("SIGKILL");
    expect(p.running).toBe(false);
  });

  it("a log wait fails as soon as the process exits without the line", async () => {
    const p = new ServiceProcess("short", "sh", ["-c", "echo bye; exit 3"]);
    await expect(p.waitForLog("never logged", { timeoutMs: 60_000 })).rejects.toThrow(/short exited \(\{"code":3,"signal":null\}\) before logging "never logged"/);
  });
});

describe("finding nats-server", () => {
  const saved = process.env.NATS_SERVER_BIN;
  afterEach(() => {
    if (saved === undefined) delete process.env.NATS_SERVER_BIN;
    else process.env.NATS_SERVER_BIN = saved;
  });

  it("takes NATS_SERVER_BIN first, and says so when it is not executable", () => {
    process.env.NATS_SERVER_BIN = process.execPath;
    expect(natsServerBin()).toBe(process.execPath);
    process.env.NATS_SERVER_BIN = "/nonexistent/nats-server";
    expect(() => natsServerBin()).toThrow("NATS_SERVER_BIN=/nonexistent/nats-server is not an executable file.");
  });
});

describe("the end-of-run check for children left behind", () => {
  it("kills a recorded child still alive and fails; leaves alone those gone and pids reused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "skytools-test-leftovers-"));
    const leftover = spawn("sleep", ["60"], { stdio: "ignore" });
    const gone = spawn("true", [], { stdio: "ignore" });
    await new Promise((resolve) => gone.once("exit", resolve));
    const exitCode = process.exitCode;
    try {
      writeFileSync(
        join(dir, CHILDREN_FILE),
        childLine(leftover.pid!, "left over") +
          `${gone.pid} 1 gone ${process.pid}\n` +
          `${process.pid} 1 pid_reused ${process.pid}\n`, // alive, but started at another time
      );
      expect(aliveChildren(dir).map((c) => c.label)).toEqual(["left_over"]);
      const exited = new Promise((resolve) => leftover.once("exit", (_code, signal) => resolve(signal)));
      await expect(killLeftoverChildren(dir)).rejects.toThrow(/1 outlived the run and were killed now: left_over \(pid \d+/);
      expect(await exited).toBe("SIGKILL");
      expect(process.exitCode).toBe(1);
    } finally {
      process.exitCode = exitCode; // the check marks the run failed; this worker's run is not
      leftover.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
