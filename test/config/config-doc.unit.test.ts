/**
 * docs/configuration.md is generated from the config schemas; these tests
 * fail when someone changes a schema without `npm run docs:config`, and
 * check that the sample file shown for each section really loads.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_SECTIONS, configMarkdown } from "../../shared/config/config-doc.ts";
import { loadConfigText } from "../../shared/config/load.ts";

const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");

describe("docs/configuration.md", () => {
  it("is generated from the current schemas (npm run docs:config)", () => {
    expect(doc).toBe(configMarkdown());
  });

  it("lists every key of every section", () => {
    for (const { schema } of CONFIG_SECTIONS) {
      expect(Object.keys(schema).filter((key) => !doc.includes(`| \`${key}\` |`))).toEqual([]);
    }
  });

  it("shows a sample file per section that loads without errors", () => {
    for (const { section, schema, sample } of CONFIG_SECTIONS) {
      const values = loadConfigText(sample, `${section}.ini`, section, schema, {});
      expect(values.job_name, section).toBeTypeOf("string");
      expect(doc).toContain(sample);
    }
  });
});
