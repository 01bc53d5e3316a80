// Every advisory lock in the tree is one of the registry's (shared/db/advisory-locks.ts), and the doc is current.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ADVISORY_LOCKS, renderAdvisoryLockDoc } from "../../shared/db/advisory-locks.ts";

const root = new URL("../../", import.meta.url).pathname;

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) files(rel, out);
    else if (/\.(ts|sql)$/.test(name)) out.push(rel);
  }
  return out;
}

const sources = [...files("shared"), ...files("services"), ...files("sql")];
const classIds = new Set<number>(Object.values(ADVISORY_LOCKS).map((l) => l.classId));

describe("advisory lock registry", () => {
  it("class ids are unique", () => {
    expect(classIds.size).toBe(Object.keys(ADVISORY_LOCKS).length);
  });

  it("SQL files lock only registered classes, and TypeScript takes its classes from the registry", () => {
    const strays: string[] = [];
    for (const file of sources) {
      if (file === "shared/db/advisory-locks.ts") continue;
      const text = readFileSync(join(root, file), "utf8");
      for (const m of text.matchAll(/\b18864828\d\d\b/g)) {
        const id = Number(m[0]);
        if (file.endsWith(".ts") || !classIds.has(id)) strays.push(`${file}: ${m[0]}`);
      }
      // The old single-key-by-name form (hashtext('...') as the class) is gone.
      if (/advisory_(xact_)?lock\(\s*hashtext\(/.test(text)) strays.push(`${file}: lock class from hashtext`);
    }
    expect(strays).toEqual([]);
  });

  it("every advisory lock call in the tree uses the two-key form", () => {
    const oneKey: string[] = [];
    for (const file of sources) {
      const text = readFileSync(join(root, file), "utf8");
      for (const m of text.matchAll(/pg_(?:try_)?advisory_(?:xact_)?lock\(([^()]*(?:\([^()]*\)[^()]*)*)\)/g)) {
        if (!m[1]!.includes(",")) oneKey.push(`${file}: ${m[0]}`);
      }
    }
    expect(oneKey).toEqual([]);
  });

  it("docs/advisory-locks.md is generated from the registry (npm run docs:locks)", () => {
    expect(readFileSync(join(root, "docs/advisory-locks.md"), "utf8")).toBe(renderAdvisoryLockDoc());
  });
});
