/**
 * Runs the project's SQL install scripts from TypeScript, reading the very
 * files that `psql -f` runs, so there is one source of truth.
 *
 * Only the psql features the scripts use are understood: `\ir FILE`
 * (include relative to the including file) and `\set` (ignored: it only
 * sets psql options). Any other backslash command is an error, so a script
 * change that psql would accept but this loader would misread fails loudly.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Queryable } from "./queryable.ts";

export function expandSqlScript(path: string, seen: Set<string> = new Set()): string {
  const absolute = resolve(path);
  if (seen.has(absolute)) throw new Error(`SQL script includes itself: ${absolute}`);
  seen.add(absolute);
  const out: string[] = [];
  for (const line of readFileSync(absolute, "utf8").split("\n")) {
    const trimmed = line.trim();
    if (!trimmed.startsWith("\\")) {
      out.push(line);
      continue;
    }
    const [command, argument] = trimmed.split(/\s+/, 2);
    if (command === "\\ir" && argument) {
      out.push(expandSqlScript(resolve(dirname(absolute), argument), seen));
    } else if (command === "\\set") {
      continue;
    } else {
      throw new Error(`${absolute}: unsupported psql command ${trimmed}`);
    }
  }
  seen.delete(absolute);
  return out.join("\n");
}

/** Runs a whole script as one simple-protocol query (the script brings its own BEGIN/COMMIT). */
export async function runSqlScript(db: Queryable, path: string): Promise<void> {
  await db.query(expandSqlScript(path));
}
