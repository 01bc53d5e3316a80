/**
 * The sample configs of deploy/config: each names every key of its section
 * (set, or shown commented out), no key the schema does not have, and loads
 * with the program's own loader.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../shared/config/load.ts";
import { loadConfigText, readRepo, sampleKeys, TOOLS, type ToolName } from "./deploy-helpers.ts";

const SAMPLES: Array<[ToolName, string]> = [
  ["pgqadm", "deploy/config/pgqadm.ini"],
  ["londiste", "deploy/config/londiste.ini"],
];

/** What is wrong with a sample's keys: missing from it, unknown to the schema, or named twice. */
function keyProblems(tool: ToolName, text: string): string[] {
  const { section, schema } = TOOLS[tool];
  const { set, commented } = sampleKeys(text, section);
  const named = [...set, ...commented];
  return [
    ...Object.keys(schema)
      .filter((key) => !named.includes(key))
      .map((key) => `${key}: not in the sample`),
    ...named.filter((key) => !Object.hasOwn(schema, key)).map((key) => `${key}: not a key of [${section}]`),
    ...named.filter((key, i) => named.indexOf(key) !== i).map((key) => `${key}: named twice`),
  ];
}

describe.each(SAMPLES)("%s sample config %s", (tool, path) => {
  const text = readRepo(path);

  it("names every key of the section once, and only those", () => {
    expect(keyProblems(tool, text)).toEqual([]);
  });

  it("loads with the real loader, without any environment", () => {
    const config = loadConfigText(tool, text, {});
    expect(config.jobName).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(config.metricsPort).toBeTypeOf("number");
    expect(config.metricsHost).toBe("127.0.0.1");
  });

  it("takes environment overrides as the services get them", () => {
    const key = tool === "pgqadm" ? "PGQADM_METRICS_HOST" : "LONDISTE_METRICS_HOST";
    expect(loadConfigText(tool, text, { [key]: "0.0.0.0" }).metricsHost).toBe("0.0.0.0");
  });

  it("the checks catch a broken copy", () => {
    const [first] = Object.keys(TOOLS[tool].schema);
    const withoutFirst = text
      .split("\n")
      .filter((line) => !new RegExp(`^[;#]?\\s*${first}\\s*=`).test(line))
      .join("\n");
    expect(keyProblems(tool, withoutFirst)).toEqual([`${first}: not in the sample`]);
    const misspelt = `${text}\n; metrics_prot = 1\n`;
    expect(keyProblems(tool, misspelt)).toEqual(["metrics_prot: not a key of [" + TOOLS[tool].section + "]"]);
    expect(() => loadConfigText(tool, `${text}\nmetrics_prot = 1\n`, {})).toThrow(ConfigError);
  });
});
