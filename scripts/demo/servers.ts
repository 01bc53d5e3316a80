/**
 * The demo's PostgreSQL and NATS: the servers named by DATABASE_URL /
 * NATS_URL when set, otherwise throwaway ones started from the local
 * binaries (initdb + pg_ctl as the `postgres` user when we are root, and
 * `nats-server -js`), on free ports, in the demo's temp dir. Each server
 * runs in its own process group, so a Ctrl-C in the terminal reaches only
 * the demo, which then stops them in order.
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { access, appendFile, chmod, chown, constants, mkdir, readdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import pg from "pg";

const run = promisify(execFile);

export const INSTALL_HELP = [
  "Install them (Debian/Ubuntu, as root):",
  "    apt-get install postgresql-15 nats-server",
  "or run the demo against servers you already have:",
  "    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres NATS_URL=nats://127.0.0.1:4222 npm run demo",
  "(DATABASE_URL names a database to connect to; the role must be allowed to create databases.",
  " NATS must run with JetStream: nats-server -js.)",
].join("\n");

/** A problem the user can fix: printed as it is, without a stack trace. */
export class DemoError extends Error {}

export interface Server {
  /** postgres:// or nats:// URL. */
  url: string;
  /** Where it came from, for the intro. */
  origin: string;
  /** Stops a throwaway server (no-op for one given by the environment). */
  stop(): Promise<void>;
  /** Last resort when the demo dies: kills a throwaway server at once (synchronous). */
  kill(): void;
}

export interface Binaries {
  pgBin: string | undefined;
  natsServer: string | undefined;
}

/** Finds initdb/pg_ctl (highest /usr/lib/postgresql/<v>/bin, else PATH) and nats-server. */
export async function findBinaries(): Promise<Binaries> {
  const root = "/usr/lib/postgresql";
  const versions = (await readdir(root).catch(() => [] as string[]))
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  const path = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  let pgBin: string | undefined;
  for (const dir of [...versions.map((v) => join(root, v, "bin")), ...path]) {
    if ((await isExecutable(join(dir, "initdb"))) && (await isExecutable(join(dir, "pg_ctl"))) && (await isExecutable(join(dir, "postgres")))) {
      pgBin = dir;
      break;
    }
  }
  let natsServer: string | undefined;
  for (const candidate of ["/usr/sbin/nats-server", ...path.map((d) => join(d, "nats-server"))]) {
    if (await isExecutable(candidate)) {
      natsServer = candidate;
      break;
    }
  }
  return { pgBin, natsServer };
}

/** A server from the environment: checked, never stopped. */
export async function givenPostgres(url: string): Promise<Server> {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new DemoError(`DATABASE_URL must be a postgres:// URL, not "${redact(url)}"`);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ ok: boolean }>("select rolsuper or rolcreatedb as ok from pg_roles where rolname = current_user");
    if (!rows[0]?.ok) throw new Error("the role may not create databases (needs CREATEDB or superuser)");
  } catch (error) {
    throw new DemoError(`PostgreSQL at DATABASE_URL=${redact(url)} is not usable: ${(error as Error).message}`);
  } finally {
    await client.end().catch(() => {});
  }
  return { url, origin: `DATABASE_URL (${redact(url)})`, stop: async () => {}, kill: () => {} };
}

export async function givenNats(url: string): Promise<Server> {
  await checkNats(url).catch((error: unknown) => {
    throw new DemoError(`NATS at NATS_URL=${redact(url)}: ${(error as Error).message}`);
  });
  return { url, origin: `NATS_URL (${redact(url)})`, stop: async () => {}, kill: () => {} };
}

/** initdb + pg_ctl start into `dir` (created here), as `postgres` when we are root. */
export async function startThrowawayPostgres(bin: string, dir: string): Promise<Server> {
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await lookupUser("postgres") : undefined;
  if (asRoot && !owner) {
    throw new DemoError(
      "Running as root, but there is no `postgres` user to run initdb as (initdb refuses root).\n" + INSTALL_HELP,
    );
  }
  const tool = (name: string) => (asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, name)]] : [join(bin, name), []]) as [string, string[]];
  await mkdir(dir, { mode: 0o700 });
  if (owner) await chown(dir, owner.uid, owner.gid);
  const data = join(dir, "data");
  const [initdb, initdbArgs] = tool("initdb");
  try {
    await run(initdb, [...initdbArgs, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]);
  } catch (error) {
    throw new Error(`initdb failed in ${data}: ${describeExecError(error)}`);
  }
  const port = await freePort();
  // A demo server: no durability needed, so commits are quick.
  const settings: Record<string, string> = {
    port: String(port),
    listen_addresses: "127.0.0.1",
    unix_socket_directories: "",
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "100",
  };
  await appendFile(join(data, "postgresql.conf"), Object.entries(settings).map(([k, v]) => `${k} = '${v}'\n`).join(""));
  const log = join(dir, "server.log");
  const [pgCtl, pgCtlArgs] = tool("pg_ctl");
  // detached: the postmaster gets its own session, so a Ctrl-C in the terminal does not reach it.
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(pgCtl, [...pgCtlArgs, "-D", data, "-l", log, "-w", "-t", "60", "start"], { detached: true, stdio: "ignore" });
    child.once("exit", (c) => resolve(c));
    child.once("error", () => resolve(-1));
  });
  if (code !== 0) {
    const tail = await readFile(log, "utf8").catch(() => "");
    throw new Error(`pg_ctl start failed (port ${port}, exit ${code}):\n${tail.slice(-2000)}`);
  }
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    origin: `a throwaway PostgreSQL from ${bin} on port ${port}`,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await run(pgCtl, [...pgCtlArgs, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"]).catch(() => {});
    },
    kill: () => {
      if (stopped) return;
      stopped = true;
      try {
        // SIGQUIT to the postmaster is pg_ctl's immediate shutdown.
        const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
        if (pid > 0) process.kill(pid, "SIGQUIT");
      } catch {
        // not running
      }
    },
  };
}

/** `nats-server -js` on a free port, store and log in `dir`. */
export async function startThrowawayNats(bin: string, dir: string): Promise<Server> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const log = join(dir, "nats.log");
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "js"), "-l", log], {
    detached: true,
    stdio: "ignore",
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    const done = () => {
      exited = true;
      resolve();
    };
    child.once("exit", done);
    child.once("error", done);
  });
  const stop = async () => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exit;
    clearTimeout(timer);
  };
  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) {
      const tail = await readFile(log, "utf8").catch(() => "");
      throw new Error(`nats-server exited at start (port ${port}):\n${tail.slice(-2000)}`);
    }
    try {
      await checkNats(url);
      return { url, origin: `a throwaway nats-server (JetStream) from ${bin} on port ${port}`, stop, kill: () => void child.kill("SIGKILL") };
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`nats-server did not answer on ${url} within 15 s: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function checkNats(url: string): Promise<void> {
  const nc = await connect({ servers: url, timeout: 3_000, reconnect: false });
  try {
    await jetstreamManager(nc).catch((error: unknown) => {
      throw new Error(`JetStream is not enabled (start nats-server with -js): ${(error as Error).message}`);
    });
  } finally {
    await nc.close().catch(() => {});
  }
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? resolve(addr.port) : reject(new Error("no free port"))));
    });
  });
}

/** Gives the postgres user access to a directory we created (mkdtemp makes it 0700). */
export async function openForPostgres(dir: string): Promise<void> {
  await chmod(dir, 0o755);
}

/** `url` with its database replaced by `database`. */
export function urlForDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** The URL without its password. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([run("id", ["-u", name]), run("id", ["-g", name])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

function describeExecError(error: unknown): string {
  const e = error as { message?: string; stderr?: string };
  return [e.message, e.stderr].filter(Boolean).join("\n");
}
