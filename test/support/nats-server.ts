/**
 * Where the nats-server binary is: NATS_SERVER_BIN, then PATH, then the places packages
 * put it (/usr/sbin for Debian's package, /usr/local/bin for a release download).
 * Used by the global setup (a throwaway server when NATS_URL is unset) and by tests that
 * run a private server they can stop. Free of vitest imports: the global setup loads it.
 */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

const PACKAGE_DIRS = ["/usr/sbin", "/usr/local/bin", "/usr/bin"];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The places looked at, in order. */
export function natsServerCandidates(): string[] {
  const fromEnv = process.env.NATS_SERVER_BIN?.trim();
  const fromPath = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((d) => d !== "")
    .map((d) => join(d, "nats-server"));
  return [...(fromEnv ? [fromEnv] : []), ...fromPath, ...PACKAGE_DIRS.map((d) => join(d, "nats-server"))];
}

/** The first executable nats-server, or undefined. */
export function findNatsServer(): string | undefined {
  const fromEnv = process.env.NATS_SERVER_BIN?.trim();
  if (fromEnv) return executable(fromEnv) ? fromEnv : undefined; // a wrong explicit path is an error, not a hint
  return natsServerCandidates().find(executable);
}

/** The nats-server binary; throws saying where it looked and how to get one. */
export function natsServerBin(): string {
  const bin = findNatsServer();
  if (bin) return bin;
  const fromEnv = process.env.NATS_SERVER_BIN?.trim();
  throw new Error(
    fromEnv
      ? `NATS_SERVER_BIN=${fromEnv} is not an executable file.`
      : `nats-server not found (looked in ${natsServerCandidates().join(", ")}). ` +
          "Install it (Debian/Ubuntu: `apt-get install nats-server`) or set NATS_SERVER_BIN to its path.",
  );
}
