/**
 * What the tests of deploy/ check the deployment files against: the
 * package's bins, the service commands of the tools' own command tables,
 * the config schemas and their real loaders. Also a reader of systemd unit
 * files, a strict check of Kubernetes objects and a small JSON Schema
 * validator for the compose file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LONDISTE_OPTIONS, SERVICE_COMMANDS as LONDISTE_SERVICES } from "../../services/londiste/commands.ts";
import * as pgqadmCommands from "../../services/pgqadm/commands.ts";
import { tryParseCommandLine } from "../../shared/cli/args.ts";
import { type ConfigSchema, envName } from "../../shared/config/load.ts";
import { LONDISTE_SCHEMA, loadLondisteConfig } from "../../shared/config/londiste.ts";
import { loadTickerConfig, PGQADM_SCHEMA } from "../../shared/config/pgqadm.ts";
import type { CommonSettings } from "../../shared/config/common-keys.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function repoPath(path: string): string {
  return join(ROOT, path);
}

export function readRepo(path: string): string {
  return readFileSync(repoPath(path), "utf8");
}

interface PackageJson {
  version: string;
  bin?: string | Record<string, string>;
}

export function packageJson(): PackageJson {
  return JSON.parse(readRepo("package.json")) as PackageJson;
}

/**
 * The bins `npm install -g` puts on the PATH, by name, with the file each
 * runs. The package's own `bin`; while it has none, the launchers' workspace
 * (services/cli), whose bins `npx` finds in a checkout.
 */
export function packageBins(): Map<string, string> {
  const fromPackage = (dir: string): Map<string, string> => {
    const pkg = JSON.parse(readRepo(join(dir, "package.json"))) as PackageJson & { name: string };
    if (pkg.bin === undefined) return new Map();
    if (typeof pkg.bin === "string") return new Map([[pkg.name, repoPath(join(dir, pkg.bin))]]);
    return new Map(Object.entries(pkg.bin).map(([name, file]) => [name, repoPath(join(dir, file))]));
  };
  const own = fromPackage(".");
  return own.size > 0 ? own : fromPackage("services/cli");
}

/** The config section each bin reads, its schema and its real loader. */
export const TOOLS = {
  pgqadm: { section: "pgqadm", schema: PGQADM_SCHEMA, load: loadTickerConfig },
  londiste: { section: "londiste", schema: LONDISTE_SCHEMA, load: loadLondisteConfig },
} satisfies Record<string, { section: string; schema: ConfigSchema; load: (path: string, env: NodeJS.ProcessEnv) => CommonSettings }>;

export type ToolName = keyof typeof TOOLS;

function isTool(name: string): name is ToolName {
  return Object.hasOwn(TOOLS, name);
}

/**
 * The long-running commands of a tool, with the options each takes, from
 * the tool's own tables. pgqadm's launcher knows `ticker` without a table;
 * its help text marks it as the long-running one.
 */
export function serviceCommands(tool: ToolName): Record<string, { options: string[] }> {
  if (tool === "londiste") return LONDISTE_SERVICES;
  const table = (pgqadmCommands as Record<string, unknown>).SERVICE_COMMANDS;
  if (table !== undefined) return table as Record<string, { options: string[] }>;
  const lines = pgqadmCommands.helpText().split("\n").filter((line) => line.includes("(long-running)"));
  return Object.fromEntries(lines.map((line) => [line.trim().split(/\s+/)[0]!, { options: [] }]));
}

export interface ServiceCommand {
  tool: ToolName;
  config: string;
  command: string;
  options: Record<string, string | true>;
}

/**
 * Checks a command line the way the launchers route it: a bin of the
 * package, then CONFIG and one of the tool's service commands with only the
 * options that command takes. Returns the problem or the command.
 */
export function parseServiceCommand(argv: string[], binDir?: string): ServiceCommand | string {
  const [bin, ...args] = argv;
  if (bin === undefined) return "empty command";
  if (binDir !== undefined && !bin.startsWith(`${binDir}/`)) return `${bin}: not in ${binDir}`;
  const tool = basename(bin);
  if (!packageBins().has(tool)) return `${bin}: not a bin of the package (${[...packageBins().keys()].join(", ")})`;
  if (!isTool(tool)) return `${bin}: no config section known for it`;
  const parsed = tryParseCommandLine(args, tool === "londiste" ? LONDISTE_OPTIONS : {});
  if (parsed === undefined) return `${argv.join(" ")}: does not parse`;
  const [config, command, ...rest] = parsed.words;
  const services = serviceCommands(tool);
  if (config === undefined || command === undefined || rest.length > 0 || !Object.hasOwn(services, command)) {
    return `${argv.join(" ")}: not "${tool} CONFIG <${Object.keys(services).join("|")}>"`;
  }
  const extra = Object.keys(parsed.options).filter((o) => !services[command]!.options.includes(o));
  if (extra.length > 0) return `${argv.join(" ")}: ${command} does not take --${extra.join(", --")}`;
  return { tool, config, command, options: parsed.options };
}

/** The config key an environment variable overrides for a tool, if any. */
export function configKeyOfEnv(tool: ToolName, name: string): string | undefined {
  const { section, schema } = TOOLS[tool];
  return Object.keys(schema).find((key) => envName(section, key) === name);
}

/** Loads a config text with the tool's real loader, with exactly `env` as the environment. */
export function loadConfigText(tool: ToolName, text: string, env: Record<string, string>): CommonSettings {
  const dir = mkdtempSync(join(tmpdir(), "deploy-config-"));
  try {
    const path = join(dir, `${tool}.ini`);
    writeFileSync(path, text);
    return TOOLS[tool].load(path, env);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The keys a sample config names in `section`: set (`key = value`) and
 * shown commented out (`; key = value`).
 */
export function sampleKeys(text: string, section: string): { set: string[]; commented: string[] } {
  const set: string[] = [];
  const commented: string[] = [];
  let inSection = false;
  for (const line of text.split("\n")) {
    const header = /^\[([^\]]+)\]\s*$/.exec(line);
    if (header) {
      inSection = header[1] === section;
      continue;
    }
    if (!inSection) continue;
    const active = /^([A-Za-z0-9_]+)\s*[=:]/.exec(line);
    if (active) set.push(active[1]!.toLowerCase());
    const shown = /^[;#]\s*([a-z0-9_]+)\s*=/.exec(line);
    if (shown) commented.push(shown[1]!);
  }
  return { set, commented };
}

// --- systemd unit files -----------------------------------------------------

export interface UnitEntry {
  key: string;
  value: string;
  line: number;
}

/** A unit file's sections and entries in order (keys may repeat), continuation lines joined. */
export function parseUnitFile(text: string): Map<string, UnitEntry[]> {
  const sections = new Map<string, UnitEntry[]>();
  let current: UnitEntry[] | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i]!;
    if (/^\s*([#;]|$)/.test(line)) continue;
    while (line.endsWith("\\") && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i]!.trim()}`;
    const header = /^\[([^\]]+)\]\s*$/.exec(line);
    if (header) {
      current = [];
      if (sections.has(header[1]!)) throw new Error(`line ${start}: section [${header[1]}] twice`);
      sections.set(header[1]!, current);
      continue;
    }
    const pair = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    if (!pair || !current) throw new Error(`line ${start}: not Key=Value in a section: ${line}`);
    current.push({ key: pair[1]!, value: pair[2]!.trim(), line: start });
  }
  return sections;
}

/** The last value of a key (systemd's rule for single-valued settings). */
export function unitValue(unit: Map<string, UnitEntry[]>, section: string, key: string): string | undefined {
  return unit.get(section)?.filter((e) => e.key === key).at(-1)?.value;
}

/**
 * An ExecStart line as systemd turns it into argv: specifiers resolved
 * (%i, %S, %%), then words split at unquoted spaces with quotes removed,
 * then $$ made a literal $. Only what these units use is supported; the
 * rest throws, so that a unit needing more fails the test rather than
 * being half-understood.
 */
export function execArgv(value: string, instance: string): string[] {
  const specifiers: Record<string, string> = { i: instance, S: "/var/lib", "%": "%" };
  const resolved = value.replace(/%(.)/g, (_m, c: string) => {
    if (!Object.hasOwn(specifiers, c)) throw new Error(`specifier %${c} not supported here`);
    return specifiers[c]!;
  });
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const ch of resolved) {
    if (ch === "\\") throw new Error("backslash escapes not supported here");
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      word ??= "";
    } else if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + ch;
    }
  }
  if (quote !== undefined) throw new Error("unterminated quote");
  if (word !== undefined) words.push(word);
  return words.map((w) => {
    if (/\$(?!\$)[A-Za-z_{]/.test(w.replace(/\$\$/g, ""))) throw new Error(`environment variable substitution in ${w} not supported here`);
    return w.replace(/\$\$/g, "$");
  });
}

// --- Kubernetes objects -----------------------------------------------------

export interface Validatable {
  validate(): void;
}

/**
 * Validates a Kubernetes object against its schema and, since the schemas
 * allow fields they do not know (so that the API server can ignore them), also
 * rejects every field the schema's validator never looked at: a misspelt
 * field is an error here, as with `kubectl apply --validate=strict`. The
 * validator reads each field its schema defines, and each entry of the maps
 * (labels, data, ...) it checks; a field nobody read is unknown.
 */
export function validateStrict(model: Validatable): void {
  const read = new WeakMap<object, Set<PropertyKey>>();
  const proxies = new WeakMap<object, object>();
  const watch = (value: unknown): unknown => {
    if (value === null || typeof value !== "object") return value;
    const known = proxies.get(value);
    if (known) return known;
    const keys = new Set<PropertyKey>();
    read.set(value, keys);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        keys.add(key);
        return watch(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        keys.add(key);
        return Reflect.has(target, key);
      },
      getOwnPropertyDescriptor(target, key) {
        keys.add(key);
        return Reflect.getOwnPropertyDescriptor(target, key);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  model.validate.call(watch(model));

  const unknown: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== "object") return;
    const keys = read.get(value);
    for (const [key, child] of Object.entries(value)) {
      const where = Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`;
      if (!Array.isArray(value) && !keys?.has(key)) unknown.push(where);
      else walk(child, where);
    }
  };
  walk(model, "");
  if (unknown.length > 0) throw new Error(`unknown field(s): ${unknown.join(", ")}`);
}

// --- JSON Schema (for the compose file) -------------------------------------

type Schema = boolean | { [keyword: string]: unknown };

/** Keywords that describe and do not constrain. */
const ANNOTATIONS = new Set(["$schema", "$id", "$comment", "title", "description", "default", "deprecated", "examples", "definitions", "format"]);
const CHECKED = new Set([
  "$ref",
  "type",
  "properties",
  "patternProperties",
  "additionalProperties",
  "required",
  "items",
  "oneOf",
  "anyOf",
  "allOf",
  "enum",
  "const",
  "uniqueItems",
  "minimum",
  "maximum",
  "pattern",
]);

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * Validates `value` against a draft-07 JSON Schema that uses only the
 * keywords in CHECKED (the compose specification's); an unknown keyword
 * throws, so a newer schema cannot be half-checked in silence. Returns the
 * problems, each with the path of the value.
 */
export function jsonSchemaProblems(root: Schema, value: unknown): string[] {
  const check = (schema: Schema, v: unknown, path: string): string[] => {
    if (schema === true) return [];
    if (schema === false) return [`${path}: not allowed`];
    for (const keyword of Object.keys(schema)) {
      if (!CHECKED.has(keyword) && !ANNOTATIONS.has(keyword) && !keyword.startsWith("x-")) throw new Error(`schema keyword ${keyword} not supported`);
    }
    const problems: string[] = [];
    if (typeof schema.$ref === "string") {
      const target = schema.$ref.replace(/^#\//, "").split("/").reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], root);
      if (target === undefined) throw new Error(`unresolved $ref ${schema.$ref}`);
      problems.push(...check(target as Schema, v, path));
    }
    if (schema.type !== undefined) {
      const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
      const actual = typeOf(v);
      const fits = types.some((t) => t === actual || (t === "integer" && Number.isInteger(v)) || (t === "number" && actual === "number"));
      if (!fits) return [...problems, `${path}: is ${actual}, not ${types.join(" or ")}`];
    }
    if (schema.enum !== undefined && !(schema.enum as unknown[]).includes(v)) problems.push(`${path}: not one of ${JSON.stringify(schema.enum)}`);
    if (schema.const !== undefined && schema.const !== v) problems.push(`${path}: not ${JSON.stringify(schema.const)}`);
    if (typeof v === "number") {
      if (typeof schema.minimum === "number" && v < schema.minimum) problems.push(`${path}: below ${schema.minimum}`);
      if (typeof schema.maximum === "number" && v > schema.maximum) problems.push(`${path}: above ${schema.maximum}`);
    }
    if (typeof v === "string" && typeof schema.pattern === "string" && !new RegExp(schema.pattern, "u").test(v)) {
      problems.push(`${path}: does not match ${schema.pattern}`);
    }
    if (Array.isArray(v)) {
      if (schema.items !== undefined) v.forEach((item, i) => problems.push(...check(schema.items as Schema, item, `${path}[${i}]`)));
      if (schema.uniqueItems === true && new Set(v.map((item) => JSON.stringify(item))).size !== v.length) problems.push(`${path}: items repeat`);
    }
    if (typeOf(v) === "object") {
      const object = v as Record<string, unknown>;
      for (const name of (schema.required as string[] | undefined) ?? []) if (!Object.hasOwn(object, name)) problems.push(`${path}: ${name} missing`);
      const properties = (schema.properties ?? {}) as Record<string, Schema>;
      const patterns = Object.entries((schema.patternProperties ?? {}) as Record<string, Schema>);
      for (const [key, child] of Object.entries(object)) {
        let matched = false;
        if (Object.hasOwn(properties, key)) {
          matched = true;
          problems.push(...check(properties[key]!, child, `${path}.${key}`));
        }
        for (const [pattern, sub] of patterns) {
          if (new RegExp(pattern, "u").test(key)) {
            matched = true;
            problems.push(...check(sub, child, `${path}.${key}`));
          }
        }
        if (!matched && schema.additionalProperties !== undefined) {
          const extra = schema.additionalProperties as Schema;
          problems.push(...(extra === false ? [`${path}.${key}: unknown key`] : check(extra, child, `${path}.${key}`)));
        }
      }
    }
    if (schema.allOf !== undefined) for (const sub of schema.allOf as Schema[]) problems.push(...check(sub, v, path));
    if (schema.anyOf !== undefined) {
      const results = (schema.anyOf as Schema[]).map((sub) => check(sub, v, path));
      if (!results.some((r) => r.length === 0)) problems.push(...results.flat());
    }
    if (schema.oneOf !== undefined) {
      const results = (schema.oneOf as Schema[]).map((sub) => check(sub, v, path));
      const passing = results.filter((r) => r.length === 0).length;
      if (passing === 0) problems.push(...results.flat());
      else if (passing > 1) problems.push(`${path}: fits more than one of oneOf`);
    }
    return problems;
  };
  return check(root, value, "");
}

/** The compose specification's schema, as it comes with testcontainers' docker-compose package. */
export const COMPOSE_SCHEMA_PATH = repoPath("node_modules/docker-compose/schema/compose-spec.json");

export function composeSchema(): Schema {
  if (!existsSync(COMPOSE_SCHEMA_PATH)) {
    throw new Error(`${COMPOSE_SCHEMA_PATH} is missing: it comes with the devDependency testcontainers (docker-compose); point the test at another copy`);
  }
  return JSON.parse(readFileSync(COMPOSE_SCHEMA_PATH, "utf8")) as Schema;
}
