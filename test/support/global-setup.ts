/**
 * Vitest globalSetup: finds a PostgreSQL server and a NATS server with JetStream for the tests.
 *
 * Each one is resolved on its own, first match wins:
 *  1. `DATABASE_URL` / `NATS_URL` from the environment (DATABASE_URL names a maintenance database,
 *     e.g. postgres://postgres@127.0.0.1:5432/postgres; the role must be allowed to create databases);
 *  2. a Docker engine reachable by testcontainers → `postgres:15` / `nats:2 -js` containers;
 *  3. local binaries → a throwaway cluster (`initdb`, run as `postgres` when we are root) and
 *     `nats-server -js`, in a temp dir on free ports, stopped and removed in teardown;
 *  4. otherwise an error saying what to install or set.
 *
 * The URLs reach test files through `inject("databaseUrl")` / `inject("natsUrl")` (see db.ts) and
 * through process.env.DATABASE_URL / NATS_URL. Both servers are checked before any test runs.
 *
 * It also makes the run's directory (`inject("runDir")`), where the process harness
 * (processes.ts) records every child process it starts; the teardown kills any of them still
 * alive and fails the run (see leftovers.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { TestProject } from "vitest/node";
import { killLeftoverChildren } from "./leftovers.ts";
import { findPostgresBin, freePort, INSTALL_HINT, PG_SETTINGS, startLocalPostgres } from "./local-postgres.ts";
import { findNatsServer } from "./nats-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Maintenance database URL (tests create their own databases from it). */
    databaseUrl: string;
    /** NATS server URL, JetStream enabled. */
    natsUrl: string;
    /** This run's temp directory: the process harness records its children there. */
    runDir: string;
  }
}

type Cleanup = () => Promise<void>;

/** Where each server came from, for the log line. */
const source = { pg: "DATABASE_URL", nats: "NATS_URL" };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanups: Cleanup[] = [];
  const runDir = await mkdtemp(join(tmpdir(), "skytools-test-run-"));
  project.provide("runDir", runDir);
  const stopServers = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        console.error("[global-setup] teardown step failed:", err);
      }
    }
    cleanups.length = 0;
  };
  // Throws (failing the run) when a child process outlived its test file; the servers are stopped anyway.
  const teardown = async (): Promise<void> => {
    try {
      await killLeftoverChildren(runDir);
    } catch (err) {
      console.error(`[global-setup] ${(err as Error).message}`);
      throw err;
    } finally {
      await stopServers();
      await rm(runDir, { recursive: true, force: true });
    }
  };
  try {
    const databaseUrl = envUrl("DATABASE_URL") ?? (await startPostgres(cleanups));
    const natsUrl = envUrl("NATS_URL") ?? (await startNats(cleanups));
    console.log(`[global-setup] PostgreSQL ${redact(databaseUrl)} (${source.pg}), NATS ${redact(natsUrl)} (${source.nats})`);
    await checkPostgres(databaseUrl, source.pg === "DATABASE_URL");
    await checkNats(natsUrl, source.nats === "NATS_URL");
    project.provide("databaseUrl", databaseUrl);
    project.provide("natsUrl", natsUrl);
    process.env.DATABASE_URL = databaseUrl;
    process.env.NATS_URL = natsUrl;
  } catch (err) {
    await stopServers();
    await rm(runDir, { recursive: true, force: true });
    throw err;
  }
  return teardown;
}

function envUrl(name: string): string | undefined {
  const v = process.env[name]?.trim();
  return v ? v : undefined;
}

// ---------------------------------------------------------------- Docker (testcontainers)

let dockerProbe: Promise<boolean> | undefined;

/** True when testcontainers finds a container runtime. testcontainers is only loaded here. */
function dockerAvailable(): Promise<boolean> {
  dockerProbe ??= import("testcontainers")
    .then((tc) => tc.getContainerRuntimeClient())
    .then(
      () => true,
      () => false,
    );
  return dockerProbe;
}

// ---------------------------------------------------------------- PostgreSQL

async function startPostgres(cleanups: Cleanup[]): Promise<string> {
  if (await dockerAvailable()) {
    source.pg = "testcontainers postgres:15";
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer("postgres:15")
      .withDatabase("postgres")
      .withUsername("postgres")
      .withPassword("postgres")
      .withCommand(["postgres", ...PG_SETTINGS.flatMap(([k, v]) => ["-c", `${k}=${v}`])])
      .start();
    cleanups.push(async () => {
      await container.stop();
    });
    return container.getConnectionUri();
  }
  const bin = await findPostgresBin();
  if (!bin) throw new Error(`No PostgreSQL server for the tests: DATABASE_URL is unset, no Docker engine, and no initdb/pg_ctl found. ${INSTALL_HINT}`);
  source.pg = `throwaway cluster from ${bin}`;
  const server = await startLocalPostgres(bin);
  cleanups.push(() => server.stop());
  return server.url;
}

async function checkPostgres(url: string, fromEnv: boolean): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on("error", () => {}); // a dropped connection surfaces through the query below
  try {
    await client.connect();
    await client.query("select 1");
    const { rows } = await client.query<{ ok: boolean }>(
      "select rolsuper or rolcreatedb as ok from pg_roles where rolname = current_user",
    );
    if (!rows[0]?.ok) throw new Error("the role may not create databases (needs CREATEDB or superuser)");
  } catch (err) {
    const hint = fromEnv ? "Check DATABASE_URL, or unset it to let the tests find or start a server." : INSTALL_HINT;
    throw new Error(`PostgreSQL at ${redact(url)} is not usable for the tests: ${(err as Error).message}. ${hint}`);
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------- NATS

async function startNats(cleanups: Cleanup[]): Promise<string> {
  if (await dockerAvailable()) {
    source.nats = "testcontainers nats:2 -js";
    const { GenericContainer, Wait } = await import("testcontainers");
    const container = await new GenericContainer("nats:2")
      .withCommand(["-js"])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    cleanups.push(async () => {
      await container.stop();
    });
    return `nats://${container.getHost()}:${container.getMappedPort(4222)}`;
  }
  const bin = findNatsServer();
  if (!bin) throw new Error(`No NATS server for the tests: NATS_URL is unset, no Docker engine, and no nats-server found. ${INSTALL_HINT}`);
  source.nats = `throwaway ${bin} -js`;
  return startLocalNats(bin, cleanups);
}

async function startLocalNats(bin: string, cleanups: Cleanup[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "skytools-test-nats-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const log = join(dir, "nats.log");
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "js"), "-l", log], {
    stdio: "ignore",
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
    child.once("error", () => {
      exited = true;
      resolve();
    });
  });
  cleanups.push(() => stopChild(child, exit, () => exited));

  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) {
      const tail = await readFile(log, "utf8").catch(() => "");
      throw new Error(`nats-server exited during startup (port ${port}):\n${tail.slice(-2000)}`);
    }
    try {
      const nc = await connect({ servers: url, timeout: 1_000, reconnect: false });
      await nc.close();
      return url;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nats-server did not answer on ${url} within 15 s: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

async function stopChild(child: ChildProcess, exit: Promise<void>, exited: () => boolean): Promise<void> {
  if (exited()) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exit;
  clearTimeout(timer);
}

async function checkNats(url: string, fromEnv: boolean): Promise<void> {
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    nc = await connect({ servers: url, timeout: 10_000, reconnect: false });
  } catch (err) {
    const hint = fromEnv ? "Check NATS_URL, or unset it to let the tests find or start a server." : INSTALL_HINT;
    throw new Error(`NATS at ${redact(url)} does not answer: ${(err as Error).message}. ${hint}`);
  }
  try {
    await jetstreamManager(nc); // checks the JetStream API ($JS.API.INFO)
  } catch (err) {
    throw new Error(
      `NATS at ${redact(url)} answers but JetStream is not available (start nats-server with -js): ${(err as Error).message}`,
    );
  } finally {
    await nc.close().catch(() => {});
  }
}

// ---------------------------------------------------------------- small utilities

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The URL without its password, for error messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}
