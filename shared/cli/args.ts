/**
 * The argument parser of the command-line tools (`pgqadm`, `londiste` and
 * their launchers in services/cli/), on node:util's parseArgs. Both tools
 * share the shape `TOOL [OPTIONS] CONFIG COMMAND [ARGS]`, options anywhere
 * on the line, and the same usage errors, so the rules live here once.
 *
 * parseArgs runs non-strict and its tokens are checked here: its own strict
 * mode refuses an option value that starts with "-" and words its errors
 * differently from the one-line `TOOL: message` the tools print (and tests
 * match).
 */
import { parseArgs } from "node:util";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A tool's own options, by long name without the dashes. */
export type OptionSpec = Record<string, { type: "boolean" } | { type: "string"; missing: string }>;

/** The options every tool takes. */
const COMMON_OPTIONS: OptionSpec = {
  json: { type: "boolean" },
  timeout: { type: "string", missing: "--timeout needs a number of seconds" },
  help: { type: "boolean" },
};

export interface ParsedArgs {
  /** Words that are not options, in order: CONFIG, then the command and its arguments. */
  words: string[];
  /** Options given, by long name: true for flags, the text for string options. */
  options: Record<string, string | true>;
  json: boolean;
  timeoutSeconds: number | undefined;
}

/**
 * Parses argv; "help" when -h/--help comes before any usage error. Throws
 * UsageError for an unknown option, a flag given a value, or a string
 * option without one.
 */
export function parseCommandLine(argv: string[], toolOptions: OptionSpec = {}): ParsedArgs | "help" {
  const spec: OptionSpec = { ...toolOptions, ...COMMON_OPTIONS };
  const { tokens } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      Object.entries(spec).map(([name, o]) => [name, name === "help" ? { type: o.type, short: "h" } : { type: o.type }]),
    ),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const words: string[] = [];
  const options: Record<string, string | true> = {};
  for (const token of tokens) {
    if (token.kind === "positional") words.push(token.value);
    if (token.kind !== "option") continue;
    const option = Object.hasOwn(spec, token.name) ? spec[token.name]! : undefined;
    if (!option) throw new UsageError(`unknown option ${token.rawName}`);
    if (token.name === "help") return "help";
    if (option.type === "boolean") {
      if (token.value !== undefined) throw new UsageError(`${token.rawName} takes no value`);
      options[token.name] = true;
    } else {
      if (!token.value) throw new UsageError(option.missing);
      options[token.name] = token.value;
    }
    if (token.name === "timeout" && !(Number(token.value) > 0 && Number.isFinite(Number(token.value)))) {
      throw new UsageError("--timeout needs a number of seconds");
    }
  }
  const timeoutSeconds = options.timeout === undefined ? undefined : Number(options.timeout);
  return { words, options, json: options.json === true, timeoutSeconds };
}

/** Like parseCommandLine, but never throws: for the launchers, which only route and leave errors to the tool. */
export function tryParseCommandLine(argv: string[], toolOptions: OptionSpec = {}): ParsedArgs | undefined {
  try {
    const parsed = parseCommandLine(argv, toolOptions);
    return parsed === "help" ? undefined : parsed;
  } catch (error) {
    if (error instanceof UsageError) return undefined;
    throw error;
  }
}
