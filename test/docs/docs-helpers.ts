/** Reading the repository's Markdown for the documentation tests. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function read(path: string): string {
  return readFileSync(join(REPO_ROOT, path), "utf8");
}

/** Files under `dir` (repository-relative), recursively, skipping node_modules and dot folders. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(REPO_ROOT, dir))) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const path = dir === "." ? name : `${dir}/${name}`;
    if (statSync(join(REPO_ROOT, path)).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

export function packageScripts(): string[] {
  return Object.keys((JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts);
}

/** Scripts named as `npm run NAME` (and `npm test`). */
export function npmRunScripts(text: string): string[] {
  const names = [...text.matchAll(/npm run ([a-z][a-z0-9:_-]*)/g)].map((m) => m[1]!);
  if (/npm test\b/.test(text)) names.push("test");
  return [...new Set(names)];
}

function withoutCode(text: string): string {
  return text.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
}

/** Relative links of a Markdown text (web links left out). */
export function markdownLinks(text: string): Array<{ label: string; target: string }> {
  return [...withoutCode(text).matchAll(/\[([^\]]*)\]\(([^)\s]+)\)/g)]
    .map((m) => ({ label: m[1]!, target: m[2]! }))
    .filter((l) => !/^[a-z]+:/.test(l.target));
}

/** GitHub's anchor for a heading. */
export function headingSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

function headings(text: string): string[] {
  return [...text.replace(/```[\s\S]*?```/g, "").matchAll(/^#{1,6} (.+)$/gm)].map((m) => headingSlug(m[1]!));
}

/** null when `target`, linked from the file `from`, names an existing file (and heading); else what is wrong. */
export function resolveLink(from: string, target: string): string | null {
  const [path, anchor] = target.split("#") as [string, string | undefined];
  const file = path === "" ? from : normalize(join(dirname(from), path));
  if (!existsSync(join(REPO_ROOT, file))) return `${from}: ${target}: no such file`;
  if (anchor === undefined) return null;
  if (!file.endsWith(".md")) return `${from}: ${target}: an anchor into a file that is not Markdown`;
  return headings(read(file)).includes(anchor) ? null : `${from}: ${target}: no such heading in ${file}`;
}

/** Every function the SQL install scripts create, as `schema.name`. */
export const SQL_FUNCTIONS: Set<string> = new Set(
  filesUnder("sql")
    .filter((f) => f.endsWith(".sql"))
    .flatMap((f) => [...read(f).matchAll(/create or replace function ([a-z_]+\.[a-z_0-9]+)\s*\(/gi)].map((m) => m[1]!.toLowerCase())),
);

/** Functions marked `[internal]` in their header: not part of the documented API. */
export const INTERNAL_SQL_FUNCTIONS: Set<string> = new Set(
  filesUnder("sql")
    .filter((f) => f.endsWith(".sql"))
    .flatMap((f) => [...read(f).matchAll(/^-- Function: ([a-z_]+\.[a-z_0-9]+)\(.*\[internal\]/gm)].map((m) => m[1]!)),
);

/** `pgq.x(` / `londiste.x(` calls named in a text. */
export function sqlFunctionsNamed(text: string): string[] {
  return [...new Set([...text.matchAll(/\b(pgq|londiste)\.([a-z_0-9]+)\(/g)].map((m) => `${m[1]}.${m[2]}`))];
}

/** The function names of a "| group | functions |" table, each with the schema prefixed. */
export function apiTableFunctions(text: string, schema: string): string[] {
  const start = text.indexOf("| group | functions |");
  if (start < 0) return [];
  const rows = text.slice(start).split("\n").slice(2);
  const out: string[] = [];
  for (const row of rows) {
    if (!row.startsWith("|")) break;
    const cells = row.split("|");
    for (const m of (cells[2] ?? "").matchAll(/`([a-z_0-9]+)`/g)) out.push(`${schema}.${m[1]}`);
  }
  return out;
}
