/**
 * The code, the tests, the benchmarks and the scripts point only at
 * documents a reader of the repository can open: docs/*.md, by name and
 * heading, or the words themselves. No section numbers of a spec, no
 * "seed", no issue or scenario numbers; the benchmark labels (P1, P2, ...)
 * only in bench/, where docs/benchmarks.md ("Targets") defines them.
 * (README.md, docs/ and sql/ are checked in docs.unit.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { filesUnder, read } from "./docs-helpers.ts";

const THIS_FILE = "test/docs/no-foreign-references.unit.test.ts";
const DIRS = ["services", "shared", "test", "bench", "scripts"];

/** Pointers to documents that are not in the repository (written with escapes so this file does not match itself). */
const OUTSIDE = /spec ?\u00a7|\u00a7 ?\d|\bthe seed\b|\bseed's\b|\bissues? #?\d|\bscenarios? \d/i;
/** The benchmark target labels of docs/benchmarks.md. */
const BENCH_LABEL = /\bP[1-6][a-z]?\b/;

function sources(): string[] {
  return DIRS.flatMap((dir) => filesUnder(dir))
    .filter((f) => /\.(ts|js|mjs|cjs|sql|sh|md)$/.test(f))
    .filter((f) => f !== THIS_FILE);
}

/** The one line that names these words on purpose: the same check of README.md, docs/ and sql/. */
const ALLOWED = (hit: string) => hit.startsWith("test/docs/docs.unit.test.ts:") && hit.includes("const OUTSIDE = ");

function hits(files: string[], pattern: RegExp): string[] {
  return files.flatMap((file) =>
    read(file)
      .split("\n")
      .map((line, i) => (pattern.test(line) ? `${file}:${i + 1}: ${line.trim()}` : null))
      .filter((hit) => hit !== null),
  );
}

describe("references in the source", () => {
  it("services/, shared/, test/, bench/ and scripts/ point only at documents in the repository", () => {
    expect(sources().length).toBeGreaterThan(100);
    expect(hits(sources(), OUTSIDE).filter((hit) => !ALLOWED(hit))).toEqual([]);
  });

  it("the benchmark labels P1-P6 appear only in bench/", () => {
    expect(hits(sources().filter((f) => !f.startsWith("bench/")), BENCH_LABEL)).toEqual([]);
  });

  it("docs/benchmarks.md defines the labels bench/ prints", () => {
    const doc = read("docs/benchmarks.md");
    const used = new Set(sources().filter((f) => f.startsWith("bench/")).flatMap((f) => [...read(f).matchAll(/\bP[1-6][a-z]?\b/g)].map((m) => m[0])));
    expect([...used].filter((label) => !new RegExp(`^\\| ${label} \\|`, "m").test(doc))).toEqual([]);
  });
});
