import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PGQADM_SCHEMA } from "../../shared/config/pgqadm.ts";
import { PGQADM_COMMANDS } from "../../services/pgqadm/commands.ts";
import { LONDISTE_SCHEMA } from "../../shared/config/londiste.ts";
import { LONDISTE_COMMANDS } from "../../services/londiste/commands.ts";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

describe("README stays in step with the code", () => {
  it("documents every [pgqadm] config key", () => {
    const missing = Object.keys(PGQADM_SCHEMA).filter((key) => !readme.includes(`| \`${key}\` |`));
    expect(missing).toEqual([]);
  });

  it("documents every pgqadm command and its subject", () => {
    const missing = Object.keys(PGQADM_COMMANDS).filter(
      (command) => !readme.includes(`pgqadm CONF ${command}`) && !readme.includes(`/ \`${command}`),
    );
    expect(missing).toEqual([]);
    const subjects = Object.keys(PGQADM_COMMANDS).filter(
      (command) => !readme.includes(`.${command}\``) && !readme.includes(`/ \`${command}\``),
    );
    expect(subjects).toEqual([]);
  });

  it("documents every [londiste] config key and every londiste command", () => {
    expect(Object.keys(LONDISTE_SCHEMA).filter((key) => !readme.includes(`| \`${key}\` |`))).toEqual([]);
    const missing = Object.keys(LONDISTE_COMMANDS).filter(
      (command) => !readme.includes(`londiste CONF ${command}`) && !readme.includes(`/ \`${command}`),
    );
    expect(missing).toEqual([]);
  });
});
