/**
 * docs/configuration.md, built from the config schemas themselves so the
 * reference cannot drift from what the programs accept (`npm run
 * docs:config` writes it; test/config/config-doc.test.ts fails when the
 * file is stale). Pure.
 */
import { COMMON_KEYS } from "./common-keys.ts";
import { LONDISTE_SCHEMA } from "./londiste.ts";
import { type ConfigSchema, envName, type KeySpec } from "./load.ts";
import { PGQADM_SCHEMA } from "./pgqadm.ts";

interface SectionDoc {
  section: string;
  schema: ConfigSchema;
  readBy: string;
  sample: string;
}

/**
 * The sections in the order the docs present them, each with a minimal
 * file that loads (the test loads every sample, so they stay valid).
 */
export const CONFIG_SECTIONS: SectionDoc[] = [
  {
    section: "pgqadm",
    schema: PGQADM_SCHEMA,
    readBy: "the ticker service (`pgqadm CONF ticker`) and the `pgqadm` admin commands",
    sample: [
      "[pgqadm]",
      "job_name = ticker_main",
      "db = dbname=provider host=127.0.0.1 user=postgres",
      "nats_url = nats://127.0.0.1:4222",
      "logfile = /var/log/skytools/%(job_name)s.log",
    ].join("\n"),
  },
  {
    section: "londiste",
    schema: LONDISTE_SCHEMA,
    readBy:
      "the replay service (`londiste CONF replay`), the copy workers (`londiste CONF copy`), " +
      "the compare/repair workers (`londiste CONF repair-worker`) and the `londiste` admin commands",
    sample: [
      "[londiste]",
      "job_name = orders_to_reporting",
      "provider_db = dbname=shop host=db1 user=londiste",
      "subscriber_db = dbname=reporting host=db2 user=postgres",
      "pgq_queue_name = orders_events",
      "nats_url = nats://127.0.0.1:4222",
    ].join("\n"),
  },
];

const KIND_TEXT: Record<KeySpec["kind"], string> = {
  string: "text",
  number: "number",
  integer: "whole number",
  boolean: "boolean",
  dsn: "connection string",
};

function typeText(spec: KeySpec): string {
  return spec.min === undefined ? KIND_TEXT[spec.kind] : `${KIND_TEXT[spec.kind]} ≥ ${spec.min}`;
}

function defaultText(spec: KeySpec): string {
  if (spec.required) return "**required**";
  return spec.default === undefined ? "(unset)" : `\`${spec.default}\``;
}

function keyTable(section: string, schema: ConfigSchema, keys: string[]): string[] {
  const lines = ["| key | type | default | environment | meaning |", "|---|---|---|---|---|"];
  for (const key of keys) {
    const spec = schema[key]!;
    const meaning = spec.secret ? `${spec.description} (never logged)` : spec.description;
    lines.push(`| \`${key}\` | ${typeText(spec)} | ${defaultText(spec)} | \`${envName(section, key)}\` | ${meaning} |`);
  }
  return lines;
}

export function configMarkdown(): string {
  const common = new Set(Object.keys(COMMON_KEYS));
  const lines = [
    "# Configuration",
    "",
    "Generated from the config schemas (`shared/config/pgqadm.ts`, `shared/config/londiste.ts`,",
    "`shared/config/common-keys.ts`) by `npm run docs:config`; do not edit by hand.",
    "",
    "Every program takes the path of a Skytools-style INI file and reads its own section:",
    "`key = value` (or `key: value`), `#` and `;` comments, indented continuation lines,",
    "`%(name)s` interpolation from the same section or `[DEFAULT]`, `%%` for a percent sign.",
    "",
    "* Every key is checked before the program starts: an unknown key, a missing required key",
    "  or a bad value stops it with one line naming the file, the line and the key, e.g.",
    "  `conf.ini:4: [pgqadm] loop_delay: not a number: \"fast\"` (exit code 2).",
    "* Every key can be overridden by an environment variable `<SECTION>_<KEY>` in upper case",
    "  (column *environment*); the override is interpolated like a value in the file.",
    "* Booleans are `1`/`0`, `yes`/`no`, `true`/`false` or `on`/`off`. Connection strings are",
    "  libpq keyword strings (`host=db1 dbname=shop`) or `postgres://` URLs; their passwords",
    "  never reach the logs.",
    "",
  ];
  for (const { section, schema, readBy, sample } of CONFIG_SECTIONS) {
    const own = Object.keys(schema).filter((key) => !common.has(key));
    lines.push(`## \`[${section}]\``, "", `Read by ${readBy}.`, "");
    lines.push(...keyTable(section, schema, own), "");
    lines.push(`Plus the [common keys](#common-keys), overridden by \`${section.toUpperCase()}_<KEY>\`. A minimal file:`, "");
    lines.push("```ini", sample, "```", "");
  }
  lines.push(
    "## Common keys",
    "",
    "Logging, the pidfile, the NATS connection and metrics, the same in every section; the",
    "environment column shows the `[pgqadm]` name (`LONDISTE_...` for `[londiste]`).",
    "",
  );
  lines.push(...keyTable("pgqadm", COMMON_KEYS, Object.keys(COMMON_KEYS)), "");
  return lines.join("\n");
}
