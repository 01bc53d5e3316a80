/**
 * Skytools-style INI files, as Python's ConfigParser reads them: `[section]`
 * headers, `key = value` or `key: value`, `#`/`;` comment lines, values
 * continued on indented lines, keys case-insensitive, a `[DEFAULT]` section
 * whose keys every section sees, and `%(key)s` interpolation (`%%` is a
 * literal percent sign).
 */

export interface IniSection {
  /** Raw values (before interpolation), keys lower-cased, with the line they came from. */
  entries: Map<string, { value: string; line: number }>;
  line: number;
}

export interface IniFile {
  path: string;
  sections: Map<string, IniSection>;
  defaults: Map<string, { value: string; line: number }>;
}

export class IniError extends Error {
  constructor(
    readonly path: string,
    readonly line: number | undefined,
    message: string,
  ) {
    super(`${path}${line === undefined ? "" : `:${line}`}: ${message}`);
    this.name = "IniError";
  }
}

export function parseIni(text: string, path = "<config>"): IniFile {
  const file: IniFile = { path, sections: new Map(), defaults: new Map() };
  let current: Map<string, { value: string; line: number }> | undefined;
  let lastKey: string | undefined;

  text.split(/\r?\n/).forEach((raw, index) => {
    const lineNo = index + 1;
    if (/^\s*([#;]|$)/.test(raw)) {
      // ConfigParser ends a continuation at a blank line, not at a comment.
      if (raw.trim() === "") lastKey = undefined;
      return;
    }
    if (/^\s/.test(raw)) {
      if (!current || !lastKey) throw new IniError(path, lineNo, "indented line without a key to continue");
      const entry = current.get(lastKey)!;
      entry.value = `${entry.value}\n${raw.trim()}`;
      return;
    }
    const header = /^\[([^\]]+)\]\s*$/.exec(raw);
    if (header) {
      const name = header[1]!.trim();
      if (name === "DEFAULT") {
        current = file.defaults;
      } else {
        if (file.sections.has(name)) throw new IniError(path, lineNo, `section [${name}] appears twice`);
        current = new Map();
        file.sections.set(name, { entries: current, line: lineNo });
      }
      lastKey = undefined;
      return;
    }
    const pair = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(raw);
    if (!pair) throw new IniError(path, lineNo, `cannot read line: ${raw.trim()}`);
    if (!current) throw new IniError(path, lineNo, "key outside of any [section]");
    const key = pair[1]!.trim().toLowerCase();
    if (current.has(key)) throw new IniError(path, lineNo, `key ${key} appears twice in this section`);
    current.set(key, { value: pair[2]!.trim(), line: lineNo });
    lastKey = key;
  });
  return file;
}

/**
 * The section's values with `%(name)s` references resolved against the
 * section itself, then [DEFAULT], then `extra` (e.g. built-in defaults like
 * job_name). Throws on unknown references and on reference cycles.
 */
export function resolveSection(
  file: IniFile,
  sectionName: string,
  extra: Record<string, string> = {},
): Map<string, { value: string; line: number | undefined }> {
  const section = file.sections.get(sectionName);
  if (!section) throw new IniError(file.path, undefined, `section [${sectionName}] is missing`);

  const raw = new Map<string, { value: string; line: number | undefined }>();
  for (const [k, v] of Object.entries(extra)) raw.set(k, { value: v, line: undefined });
  for (const [k, v] of file.defaults) raw.set(k, v);
  for (const [k, v] of section.entries) raw.set(k, v);

  const resolved = new Map<string, { value: string; line: number | undefined }>();
  const resolve = (key: string, stack: string[]): string => {
    const done = resolved.get(key);
    if (done) return done.value;
    const entry = raw.get(key);
    if (!entry) throw new IniError(file.path, undefined, `unknown key %(${key})s referenced from ${stack.at(-1)}`);
    if (stack.includes(key)) throw new IniError(file.path, entry.line, `interpolation loop: ${[...stack, key].join(" -> ")}`);
    const value = entry.value.replace(/%(?:(%)|\(([^)]+)\)s|(.?))/g, (_m, percent?: string, name?: string) => {
      if (percent) return "%";
      if (name) return resolve(name.toLowerCase(), [...stack, key]);
      throw new IniError(file.path, entry.line, `bad '%' in value of ${key} (write %% for a percent sign)`);
    });
    resolved.set(key, { value, line: entry.line });
    return value;
  };
  for (const key of raw.keys()) resolve(key, []);
  // Only the section's own keys (and defaults) are the config; `extra` fills gaps.
  return resolved;
}
