/**
 * Throwaway PostgreSQL clusters from local binaries: used by the global
 * setup when no server is given, and by tests that must restart a server
 * (the shared one is never restarted).
 */
import { execFile } from "node:child_process";
import { access, appendFile, chmod, chown, constants, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const INSTALL_HINT =
  "Install them (Debian/Ubuntu: `apt-get install postgresql nats-server`), " +
  "or point the tests at running servers with DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres " +
  "and NATS_URL=nats://127.0.0.1:4222, or make a Docker engine reachable for testcontainers.";

/** Server settings for throwaway clusters: logical replication on, durability off (tests only). */
export const PG_SETTINGS: Array<[string, string]> = [
  ["wal_level", "logical"],
  ["max_wal_senders", "10"],
  ["max_replication_slots", "10"],
  ["max_connections", "200"],
  ["fsync", "off"],
  ["synchronous_commit", "off"],
  ["full_page_writes", "off"],
];

/** Directory holding initdb and pg_ctl: highest /usr/lib/postgresql/<v>/bin, else PATH. */
export async function findPostgresBin(): Promise<string | undefined> {
  const root = "/usr/lib/postgresql";
  const versions = await readdir(root).catch(() => [] as string[]);
  const sorted = versions.filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
  const candidates = [...sorted.map((v) => join(root, v, "bin")), ...(process.env.PATH ?? "").split(delimiter)];
  for (const dir of candidates) {
    if (dir && (await isExecutable(join(dir, "initdb"))) && (await isExecutable(join(dir, "pg_ctl")))) return dir;
  }
  return undefined;
}

export interface LocalPostgres {
  url: string;
  port: number;
  dataDir: string;
  /** pg_ctl restart: every connection is cut, the server comes back on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface LocalPostgresOptions {
  /**
   * Password of the superuser `postgres`: the cluster then asks every role for a
   * scram-sha-256 password over TCP (initdb -A scram-sha-256), as a production one does.
   */
  superuserPassword?: string;
}

/** Starts a throwaway cluster (initdb as `postgres` when we are root) on a free port; stop() removes it. */
export async function startLocalPostgres(bin: string, options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
  const cleanups: Array<() => Promise<void>> = [];
  const asRoot = process.getuid?.() === 0;
  // initdb refuses to run as root: run the server tools as `postgres` then, and give it the data dir.
  const owner = asRoot ? await lookupUser("postgres") : undefined;
  if (asRoot && !owner) throw new Error("Running as root but there is no `postgres` user to run initdb as. " + INSTALL_HINT);
  const pgTool = (tool: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, tool), ...args]) : run(join(bin, tool), args);

  const base = await mkdtemp(join(tmpdir(), "skytools-test-pg-"));
  await chmod(base, 0o755); // mkdtemp gives 0700: postgres must be able to traverse it
  cleanups.push(() => rm(base, { recursive: true, force: true }));
  const data = join(base, "data");
  await mkdir(data, { mode: 0o700 });
  if (owner) await chown(data, owner.uid, owner.gid);

  const auth = ["--auth=trust"];
  if (options.superuserPassword !== undefined) {
    const pwfile = join(base, "pwfile");
    await writeFile(pwfile, options.superuserPassword + "\n", { mode: 0o600 });
    if (owner) await chown(pwfile, owner.uid, owner.gid);
    auth.splice(0, 1, "--auth=scram-sha-256", `--pwfile=${pwfile}`);
  }
  try {
    await pgTool("initdb", ["-D", data, "-U", "postgres", ...auth, "-E", "UTF8", "--no-locale"]);
  } catch (err) {
    throw new Error(`initdb failed in ${data}: ${describeExecError(err)}`);
  } finally {
    await rm(join(base, "pwfile"), { force: true });
  }
  const port = await freePort();
  // Settings go into postgresql.conf rather than through `pg_ctl -o` (which is re-parsed by a shell).
  const settings: Array<[string, string]> = [
    ["port", String(port)],
    ["listen_addresses", "127.0.0.1"],
    ["unix_socket_directories", ""],
    ...PG_SETTINGS,
  ];
  await appendFile(join(data, "postgresql.conf"), settings.map(([k, v]) => `${k} = '${v}'\n`).join(""));

  const log = join(data, "server.log"); // inside the data dir: writable by postgres
  try {
    await pgTool("pg_ctl", ["-D", data, "-l", log, "-w", "-t", "60", "start"]);
  } catch (err) {
    const tail = await readFile(log, "utf8").catch(() => "");
    throw new Error(`pg_ctl start failed (port ${port}): ${describeExecError(err)}\n${tail.slice(-2000)}`);
  }
  const password = options.superuserPassword === undefined ? "" : `:${encodeURIComponent(options.superuserPassword)}`;
  return {
    url: `postgres://postgres${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir: data,
    restart: async () => {
      await pgTool("pg_ctl", ["-D", data, "-l", log, "-m", "fast", "-w", "-t", "60", "restart"]);
    },
    stop: async () => {
      await pgTool("pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "60", "stop"]).catch(() => {});
      for (const c of cleanups.reverse()) await c();
    },
  };
}

export async function isExecutable(path: string): Promise<boolean> {
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

/** A TCP port free right now on 127.0.0.1 (another process could still take it before we do). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export function describeExecError(err: unknown): string {
  const e = err as { message?: string; stderr?: string };
  return [e.message, e.stderr].filter(Boolean).join("\n");
}

