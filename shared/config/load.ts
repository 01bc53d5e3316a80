/**
 * Loads one program's section of a Skytools-style config file against a
 * schema: every key is known, typed and checked before the program starts.
 * Each key can be overridden by an environment variable named
 * `<SECTION>_<KEY>` in upper case (e.g. PGQADM_DB, LONDISTE_PROVIDER_DB);
 * overrides are interpolated like file values.
 *
 * Problems are reported as one line naming the file, the key and what is
 * wrong, e.g. `conf.ini:4: [pgqadm] loop_delay: not a number: "fast"`.
 */
import { readFileSync } from "node:fs";
import { IniError, parseIni, resolveSection } from "./ini.ts";
import { DsnError, toPgConfig } from "./dsn.ts";

export type KeyKind = "string" | "number" | "integer" | "boolean" | "dsn";

export interface KeySpec {
  kind: KeyKind;
  description: string;
  /** Default as it would be written in the file (interpolation applies). */
  default?: string;
  required?: boolean;
  /** Smallest allowed value for numbers. */
  min?: number;
  /** Value never logged. */
  secret?: boolean;
}

export type ConfigSchema = Record<string, KeySpec>;

export type ConfigValue = string | number | boolean;
export type ConfigValues = Record<string, ConfigValue | undefined>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Environment variable that overrides `key` of `section`. */
export function envName(section: string, key: string): string {
  return `${section}_${key}`.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
}

function convert(spec: KeySpec, value: string): ConfigValue {
  switch (spec.kind) {
    case "string":
      return value;
    case "dsn":
      toPgConfig(value); // validates; the text is kept for redaction and reuse
      return value;
    case "boolean": {
      const v = value.toLowerCase();
      if (["1", "yes", "true", "on"].includes(v)) return true;
      if (["0", "no", "false", "off"].includes(v)) return false;
      throw new Error(`not a boolean (use 1/0, yes/no, true/false, on/off): "${value}"`);
    }
    case "number":
    case "integer": {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) throw new Error(`not a number: "${value}"`);
      if (spec.kind === "integer" && !Number.isInteger(n)) throw new Error(`not a whole number: "${value}"`);
      if (spec.min !== undefined && n < spec.min) throw new Error(`must be at least ${spec.min}: "${value}"`);
      return n;
    }
  }
}

export function loadConfigText(
  text: string,
  path: string,
  section: string,
  schema: ConfigSchema,
  env: NodeJS.ProcessEnv = process.env,
): ConfigValues {
  try {
    const file = parseIni(text, path);
    const fileSection = file.sections.get(section);
    if (!fileSection) throw new ConfigError(`${path}: section [${section}] is missing`);
    for (const [key, entry] of fileSection.entries) {
      if (!Object.hasOwn(schema, key)) throw new ConfigError(`${path}:${entry.line}: [${section}] ${key}: unknown key`);
    }
    // Environment overrides replace file values before interpolation.
    for (const key of Object.keys(schema)) {
      const override = env[envName(section, key)];
      if (override !== undefined) fileSection.entries.set(key, { value: override, line: 0 });
    }
    const defaults: Record<string, string> = {};
    for (const [key, spec] of Object.entries(schema)) if (spec.default !== undefined) defaults[key] = spec.default;
    const resolved = resolveSection(file, section, defaults);

    const values: ConfigValues = {};
    for (const [key, spec] of Object.entries(schema)) {
      const entry = resolved.get(key);
      const where =
        entry?.line === 0 ? `${envName(section, key)} (environment)` : `${path}${entry?.line ? `:${entry.line}` : ""}`;
      if (entry === undefined || entry.value === "") {
        if (spec.required) throw new ConfigError(`${path}: [${section}] ${key}: missing (${spec.description})`);
        values[key] = undefined;
        continue;
      }
      try {
        values[key] = convert(spec, entry.value);
      } catch (error) {
        const message = error instanceof DsnError || error instanceof Error ? error.message : String(error);
        throw new ConfigError(`${where}: [${section}] ${key}: ${message}`);
      }
    }
    return values;
  } catch (error) {
    if (error instanceof IniError) throw new ConfigError(error.message);
    throw error;
  }
}

export function loadConfigFile(path: string, section: string, schema: ConfigSchema, env: NodeJS.ProcessEnv = process.env): ConfigValues {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${path}: cannot read config file: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return loadConfigText(text, path, section, schema, env);
}
