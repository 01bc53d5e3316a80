/**
 * The systemd unit templates of deploy/systemd: each starts a service of
 * the package as its main process, with the restart, reload and sandbox
 * settings the services rely on; the workers' instance strings split into
 * config and --instance as documented; and, where systemd-analyze is
 * installed, systemd itself accepts the files.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  configKeyOfEnv,
  execArgv,
  parseServiceCommand,
  parseUnitFile,
  readRepo,
  repoPath,
  type ServiceCommand,
  type UnitEntry,
  unitValue,
} from "./deploy-helpers.ts";

const BIN_DIR = "/usr/local/bin";

/** Each unit template and what it runs: tool and service command, with and without an instance name. */
const UNITS: Record<string, { command: string; named: boolean }> = {
  "pgqadm-ticker@.service": { command: "pgqadm ticker", named: false },
  "londiste-replay@.service": { command: "londiste replay", named: false },
  "londiste-copy@.service": { command: "londiste copy", named: true },
  "londiste-repair@.service": { command: "londiste repair-worker", named: true },
};

const SANDBOX: Record<string, string> = {
  NoNewPrivileges: "yes",
  ProtectSystem: "strict",
  ProtectHome: "yes",
  PrivateTmp: "yes",
  PrivateDevices: "yes",
  ProtectKernelTunables: "yes",
  ProtectKernelModules: "yes",
  ProtectKernelLogs: "yes",
  ProtectControlGroups: "yes",
  RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
  LockPersonality: "yes",
  SystemCallArchitectures: "native",
  CapabilityBoundingSet: "",
  RuntimeDirectory: "skytools",
  RuntimeDirectoryPreserve: "yes",
  LogsDirectory: "skytools",
};

const tmp = mkdtempSync(join(tmpdir(), "deploy-systemd-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** An executable that prints its arguments one per line, standing in for a bin. */
function stubBin(dir: string, name: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, '#!/bin/sh\nprintf "%s\\n" "$@"\n');
  chmodSync(path, 0o755);
  return path;
}

/**
 * What the unit's ExecStart finally runs for an instance string: the argv
 * of the bin, with the bin's path under /usr/local/bin. A shell in front
 * (for the workers) is run for real, with the bin replaced by a stub that
 * prints its arguments; it must exec the bin.
 */
function finalArgv(exec: string, instance: string): string[] {
  const argv = execArgv(exec, instance);
  if (argv[0] !== "/bin/sh") return argv;
  expect(argv[1]).toBe("-c");
  const script = argv[2]!;
  const bin = /exec (\/usr\/local\/bin\/[a-z-]+) /.exec(script)?.[1];
  expect(bin, "the shell execs a bin").toBeDefined();
  const stub = stubBin(join(tmp, "stub"), "bin");
  const run = spawnSync("/bin/sh", ["-c", script.replaceAll(bin!, stub), ...argv.slice(3)], { encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  return [bin!, ...run.stdout.split("\n").slice(0, -1)];
}

describe.each(Object.entries(UNITS))("%s", (file, expected) => {
  const unit = parseUnitFile(readRepo(`deploy/systemd/${file}`));
  const service = (key: string) => unitValue(unit, "Service", key);

  it("runs the service as its main process from /etc/skytools/JOB.ini", () => {
    const started = parseServiceCommand(finalArgv(service("ExecStart")!, "orders"), BIN_DIR) as ServiceCommand;
    expect(started, JSON.stringify(started)).toBeTypeOf("object");
    expect(`${started.tool} ${started.command}`).toBe(expected.command);
    expect(started.config).toBe("/etc/skytools/orders.ini");
    expect(started.options).toEqual({});
    expect(service("Type")).toBe("exec");
  });

  // Only the worker units take JOB:NAME; no test is declared for the others.
  if (expected.named) it("JOB:NAME runs the worker NAME of JOB", () => {
    const started = parseServiceCommand(finalArgv(service("ExecStart")!, "orders:2"), BIN_DIR) as ServiceCommand;
    expect(started, JSON.stringify(started)).toBeTypeOf("object");
    expect(started.config).toBe("/etc/skytools/orders.ini");
    expect(started.options).toEqual({ instance: "2" });
  });

  it("restarts on failure with a backoff, not after a config error (exit 2)", () => {
    expect(service("Restart")).toBe("on-failure");
    expect(Number(service("RestartSec"))).toBeGreaterThan(0);
    expect(Number(service("RestartSteps"))).toBeGreaterThan(0);
    expect(Number(service("RestartMaxDelaySec"))).toBeGreaterThan(Number(service("RestartSec")));
    expect(service("RestartPreventExitStatus")).toBe("2");
    expect(unitValue(unit, "Unit", "StartLimitIntervalSec")).toBe("0");
  });

  it("stops with SIGTERM and reloads with SIGHUP to the main process", () => {
    expect(service("KillSignal")).toBe("SIGTERM");
    expect(Number(service("TimeoutStopSec"))).toBeGreaterThan(0);
    expect(service("ExecReload")).toBe("/bin/kill -HUP $MAINPID");
  });

  it("runs as skytools after the network is up", () => {
    expect(service("User")).toBe("skytools");
    expect(unitValue(unit, "Unit", "After")).toContain("network-online.target");
    expect(unitValue(unit, "Unit", "Wants")).toBe("network-online.target");
    expect(unitValue(unit, "Install", "WantedBy")).toBe("multi-user.target");
  });

  it("is sandboxed, without MemoryDenyWriteExecute (V8's JIT needs W+X)", () => {
    const actual = Object.fromEntries(Object.keys(SANDBOX).map((key) => [key, service(key)]));
    expect(actual).toEqual(SANDBOX);
    expect(service("MemoryDenyWriteExecute")).toBeUndefined();
  });

  it("sets only environment variables that override a config key", () => {
    const env = (unit.get("Service") ?? []).filter((e: UnitEntry) => e.key === "Environment").flatMap((e) => e.value.split(/\s+/));
    const tool = expected.command.split(" ")[0] as "pgqadm" | "londiste";
    expect(env.map((pair) => pair.split("=")[0]!).filter((name) => configKeyOfEnv(tool, name) === undefined)).toEqual([]);
  });
});

describe("the unit files", () => {
  it("are the four services and the system user", () => {
    expect(readdirSync(repoPath("deploy/systemd")).sort()).toEqual([...Object.keys(UNITS), "skytools.sysusers"].sort());
  });

  it("a unit with a misspelt key or a wrong command fails the checks", () => {
    const text = readRepo("deploy/systemd/londiste-replay@.service");
    const misspelt = parseUnitFile(text.replace("RestartPreventExitStatus=", "RestartPreventExitStatuss="));
    expect(unitValue(misspelt, "Service", "RestartPreventExitStatus")).toBeUndefined();
    const wrong = parseUnitFile(text.replace(" replay\n", " replay-worker\n"));
    expect(parseServiceCommand(execArgv(unitValue(wrong, "Service", "ExecStart")!, "orders"), BIN_DIR)).toMatch(/not "londiste CONFIG/);
    expect(parseServiceCommand(["/usr/bin/londiste", "/etc/skytools/orders.ini", "replay"], BIN_DIR)).toMatch(/not in \/usr\/local\/bin/);
  });
});

const analyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
const systemdVersion = analyze.status === 0 ? Number(/systemd (\d+)/.exec(analyze.stdout)?.[1]) : undefined;

// Where systemd-analyze is not installed the units are still checked by the parser tests above.
if (systemdVersion !== undefined) describe(`systemd-analyze verify (systemd ${systemdVersion})`, () => {
  /** Keys older systemd versions do not know; they log them and go on. */
  const newer = (line: string) => systemdVersion! < 254 && /Unknown key '(RestartSteps|RestartMaxDelaySec)'/.test(line);

  it.each(Object.keys(UNITS))("accepts %s", (file) => {
    // The bins are not installed here: the copy under test runs stubs from a scratch directory.
    const dir = join(tmp, "verify");
    const bins = join(tmp, "verify-bin");
    for (const name of ["pgqadm", "londiste"]) stubBin(bins, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, file), readRepo(`deploy/systemd/${file}`).replaceAll(`${BIN_DIR}/`, `${bins}/`));
    const run = spawnSync("systemd-analyze", ["verify", "--man=no", join(dir, file.replace("@.", "@orders."))], { encoding: "utf8" });
    const complaints = `${run.stdout}${run.stderr}`.split("\n").filter((line) => line.trim() !== "" && !newer(line));
    expect(complaints).toEqual([]);
    expect(run.status).toBe(0);
  });

  it("and the sysusers entry creates the user skytools", () => {
    const root = join(tmp, "sysusers-root");
    mkdirSync(join(root, "etc"), { recursive: true });
    const run = spawnSync("systemd-sysusers", [`--root=${root}`, "--dry-run", repoPath("deploy/systemd/skytools.sysusers")], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(`${run.stdout}${run.stderr}`).toContain("Creating user 'skytools'");
  });
});
