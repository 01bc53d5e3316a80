/**
 * The README is the front page: it must name the commands CI and people
 * start from, and everything it names must exist — npm scripts, the
 * commands of its quick start, SQL functions, and the documents it links.
 */
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { flagsFrom, LONDISTE_OPTIONS, parseCommand, SERVICE_COMMANDS } from "../../services/londiste/commands.ts";
import { PGQADM_COMMANDS } from "../../services/pgqadm/commands.ts";
import { parseCommandLine } from "../../shared/cli/args.ts";
import { markdownLinks, npmRunScripts, packageScripts, read, resolveLink, SQL_FUNCTIONS, sqlFunctionsNamed } from "./docs-helpers.ts";

const readme = read("README.md");

/** The `npx TOOL CONFIG ...` lines of the README's shell blocks, without comments. */
function npxLines(text: string, tool: string): string[][] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").replace(/&\s*$/, "").trim())
    .filter((line) => line.startsWith(`npx ${tool} `))
    .map((line) => line.split(/\s+/).slice(2));
}

describe("README.md", () => {
  it("names the test command and the demo", () => {
    expect(readme).toMatch(/^npm test$/m);
    expect(readme).toMatch(/^npm run demo$/m);
  });

  it("names only npm scripts that exist", () => {
    const scripts = packageScripts();
    expect(npmRunScripts(readme).filter((s) => !scripts.includes(s))).toEqual([]);
  });

  it("links every document in docs/, and every link resolves", () => {
    const links = markdownLinks(readme);
    for (const doc of readdirSync(new URL("../../docs/", import.meta.url)).filter((f) => f.endsWith(".md"))) {
      expect(links.map((l) => l.target), doc).toContain(`docs/${doc}`);
    }
    expect(links.map((l) => resolveLink("README.md", l.target)).filter((problem) => problem !== null)).toEqual([]);
  });

  it("its quick start runs real londiste and pgqadm commands", () => {
    const londiste = npxLines(readme, "londiste");
    expect(londiste.length).toBeGreaterThan(3);
    for (const [, ...words] of londiste) {
      const parsed = parseCommandLine(words, LONDISTE_OPTIONS);
      if (parsed === "help") throw new Error("help in the README's quick start");
      if (Object.hasOwn(SERVICE_COMMANDS, parsed.words[0]!)) continue;
      expect(() => parseCommand(parsed.words, flagsFrom(parsed.options)), words.join(" ")).not.toThrow();
    }
    const pgqadm = npxLines(readme, "pgqadm");
    expect(pgqadm.length).toBeGreaterThan(0);
    for (const [, command] of pgqadm) expect(["ticker", ...Object.keys(PGQADM_COMMANDS)]).toContain(command);
  });

  it("names only SQL functions that the install scripts create", () => {
    expect(sqlFunctionsNamed(readme).filter((f) => !SQL_FUNCTIONS.has(f))).toEqual([]);
  });
});
