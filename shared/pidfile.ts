/**
 * Skytools pidfiles: one running process per pidfile. A pidfile whose
 * process is gone (kill -9) is stale and taken over, instead of blocking
 * every restart as Skytools 2 did.
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Writes our pid; throws when another live process holds the file. Returns a remover. */
export function claimPidfile(path: string): () => void {
  let existing: number | undefined;
  try {
    existing = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
  } catch {
    existing = undefined;
  }
  if (existing !== undefined && Number.isInteger(existing) && existing !== process.pid && alive(existing)) {
    throw new Error(`pidfile ${path} exists and process ${existing} is running`);
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${process.pid}\n`);
  return () => {
    try {
      if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
