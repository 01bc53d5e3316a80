/**
 * The documents under docs/ (and the READMEs of services/ and deploy/)
 * against the code: every command and subject the programs serve is
 * documented, every documented SQL function exists, every link resolves,
 * and nothing points at documents that are not in the repository.
 */
import { describe, expect, it } from "vitest";
import { LONDISTE_COMMANDS, SERVICE_COMMANDS } from "../../services/londiste/commands.ts";
import { PGQADM_COMMANDS } from "../../services/pgqadm/commands.ts";
import {
  apiTableFunctions,
  filesUnder,
  INTERNAL_SQL_FUNCTIONS,
  markdownLinks,
  npmRunScripts,
  packageScripts,
  read,
  resolveLink,
  SQL_FUNCTIONS,
  sqlFunctionsNamed,
} from "./docs-helpers.ts";

const DOCS = filesUnder("docs").filter((f) => f.endsWith(".md"));
const MARKDOWN = ["README.md", ...DOCS, "services/README.md", "deploy/README.md"];

describe("docs/", () => {
  it("links only to files and headings that exist", () => {
    const problems = MARKDOWN.flatMap((file) => markdownLinks(read(file)).map((l) => resolveLink(file, l.target)));
    expect(problems.filter((p) => p !== null)).toEqual([]);
  });

  it("names only npm scripts that exist", () => {
    const scripts = packageScripts();
    expect(MARKDOWN.flatMap((file) => npmRunScripts(read(file)).filter((s) => !scripts.includes(s)).map((s) => `${file}: ${s}`))).toEqual([]);
  });

  it("docs/pgqadm.md documents every pgqadm command, docs/nats-subjects.md its subject", () => {
    const doc = read("docs/pgqadm.md");
    const subjects = read("docs/nats-subjects.md");
    const names = ["ticker", ...Object.keys(PGQADM_COMMANDS)];
    expect(names.filter((c) => !doc.includes(`pgqadm CONF ${c}`) && !doc.includes(`/ \`${c}`))).toEqual([]);
    expect(Object.keys(PGQADM_COMMANDS).filter((c) => !subjects.includes(`.${c}\``) && !subjects.includes(`/ \`${c}\``))).toEqual([]);
  });

  it("docs/londiste.md documents every londiste command, docs/nats-subjects.md its subject", () => {
    const doc = read("docs/londiste.md");
    const subjects = read("docs/nats-subjects.md");
    const names = [...Object.keys(SERVICE_COMMANDS), ...Object.keys(LONDISTE_COMMANDS)];
    expect(names.filter((c) => !doc.includes(`londiste CONF ${c}`) && !doc.includes(`/ \`${c}`))).toEqual([]);
    expect(Object.keys(LONDISTE_COMMANDS).filter((c) => !subjects.includes(`\`${c.replace(" ", ".")}\``))).toEqual([]);
  });

  it("the SQL API tables list every public function, and only functions that exist", () => {
    for (const [file, schema] of [
      ["docs/pgq.md", "pgq"],
      ["docs/londiste.md", "londiste"],
    ] as const) {
      const listed = apiTableFunctions(read(file), schema);
      expect(listed.filter((f) => !SQL_FUNCTIONS.has(f)), file).toEqual([]);
      const pub = [...SQL_FUNCTIONS].filter((f) => f.startsWith(`${schema}.`) && !INTERNAL_SQL_FUNCTIONS.has(f));
      expect(pub.filter((f) => !listed.includes(f)), file).toEqual([]);
    }
  });

  it("names only SQL functions that exist", () => {
    expect(MARKDOWN.flatMap((file) => sqlFunctionsNamed(read(file)).filter((f) => !SQL_FUNCTIONS.has(f)).map((f) => `${file}: ${f}`))).toEqual([]);
  });
});

describe("references", () => {
  /** Pointers to documents a reader of the repository cannot open. */
  const OUTSIDE = /spec §|§ ?\d|\bthe seed\b|\bseed's\b|\bissue \d|\bissue #\d|\bscenario \d|\bscenarios \d/i;

  it("the READMEs, docs/ and the SQL point only at documents in the repository", () => {
    const files = [...MARKDOWN, ...filesUnder("sql")];
    const hits = files.flatMap((file) =>
      read(file)
        .split("\n")
        .map((line, i) => (OUTSIDE.test(line) ? `${file}:${i + 1}: ${line.trim()}` : null))
        .filter((hit) => hit !== null),
    );
    expect(hits).toEqual([]);
  });

  it("every docs/*.md named anywhere in the source exists", () => {
    const sources = filesUnder(".").filter((f) => /\.(ts|js|sql|md|ini|service|conf|json)$/.test(f) && !f.startsWith("bench/results/"));
    const missing = sources.flatMap((file) =>
      [...read(file).matchAll(/\bdocs\/([A-Za-z0-9_.-]+\.md)\b/g)]
        .map((m) => m[1]!)
        .filter((doc) => !DOCS.includes(`docs/${doc}`))
        .map((doc) => `${file}: docs/${doc}`),
    );
    expect(missing).toEqual([]);
  });
});
