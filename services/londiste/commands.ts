/**
 * The londiste tool's command words (the Skytools 2 `londiste.py` commands,
 * listed in README.md) and how each becomes a request to the job's replay
 * service or repair workers. Pure: argument checking only.
 */
import { type OptionSpec, UsageError } from "../../shared/cli/args.ts";

export { UsageError };

export interface Flags {
  expectSync: boolean;
  skipTruncate: boolean;
  force: boolean;
  destTable: string | undefined;
  ranged: boolean;
  lock: boolean;
  apply: boolean;
  dryRun: boolean;
  /** repair: directory of the fix files on the repair worker's host, inside its repair_dir. */
  dir: string | undefined;
}

export interface CommandLine {
  /** The service's command name (subject suffix), e.g. "provider.add". */
  command: string;
  request: Record<string, unknown>;
}

interface Usage {
  args: string;
  help: string;
  min: number;
  max: number;
  build: (args: string[], flags: Flags) => Record<string, unknown>;
  /** Flags this command accepts besides --json/--timeout. */
  flags?: Array<keyof Flags>;
}

const none = () => ({});
const tables = (args: string[]) => ({ tables: args });
const seqs = (args: string[]) => ({ seqs: args });
const MANY = Number.MAX_SAFE_INTEGER;

export const LONDISTE_COMMANDS: Record<string, Usage> = {
  "provider install": { args: "", help: "install PgQ and londiste on the provider, create the queue (needs no service)", min: 0, max: 0, build: none },
  "provider add": { args: "TABLE...", help: "capture changes of tables", min: 1, max: MANY, build: tables },
  "provider remove": { args: "TABLE...", help: "stop capturing tables", min: 1, max: MANY, build: tables },
  "provider tables": { args: "", help: "list captured tables", min: 0, max: 0, build: none },
  "provider seqs": { args: "", help: "list registered sequences", min: 0, max: 0, build: none },
  "provider add-seq": { args: "SEQ...", help: "register sequences", min: 1, max: MANY, build: seqs },
  "provider remove-seq": { args: "SEQ...", help: "unregister sequences (subscribers stop following them)", min: 1, max: MANY, build: seqs },
  "subscriber install": { args: "", help: "install londiste on the subscriber (needs no service)", min: 0, max: 0, build: none },
  "subscriber uninstall": {
    args: "",
    help: "remove the job from the subscriber: its outbox, JetStream stream, position and consumer (no tables left)",
    min: 0,
    max: 0,
    build: none,
  },
  "subscriber register": { args: "", help: "register replay's consumer on the provider queue (needs no service)", min: 0, max: 0, build: none },
  "subscriber unregister": { args: "", help: "unregister it until subscriber register; all tables go back to (none) (needs no service)", min: 0, max: 0, build: none },
  "subscriber add": {
    args: "TABLE... [--expect-sync | --skip-truncate] [--force] [--dest-table SCHEMA.TABLE]",
    help: "replicate tables (--expect-sync: they are equal already, no copy)",
    min: 1,
    max: MANY,
    flags: ["expectSync", "skipTruncate", "force", "destTable"],
    build: (args, f) => {
      if (f.expectSync && f.skipTruncate) throw new UsageError("--expect-sync and --skip-truncate do not go together");
      if (f.destTable !== undefined && args.length !== 1) throw new UsageError("--dest-table needs exactly one table");
      return {
        tables: args,
        ...(f.expectSync ? { expect_sync: true } : {}),
        ...(f.skipTruncate ? { skip_truncate: true } : {}),
        ...(f.force ? { force: true } : {}),
        ...(f.destTable !== undefined ? { dest_table: f.destTable } : {}),
      };
    },
  },
  "subscriber remove": { args: "TABLE...", help: "stop replicating tables (rows stay)", min: 1, max: MANY, build: tables },
  "subscriber resync": { args: "TABLE...", help: "copy tables again", min: 1, max: MANY, build: tables },
  "subscriber tables": { args: "", help: "list tables with their states", min: 0, max: 0, build: none },
  "subscriber missing": { args: "", help: "provider tables and sequences not replicated here", min: 0, max: 0, build: none },
  "subscriber check": { args: "", help: "check every provider table against the subscriber's", min: 0, max: 0, build: none },
  "subscriber fkeys": { args: "", help: "foreign keys involving replicated tables, as SQL", min: 0, max: 0, build: none },
  "subscriber seqs": { args: "", help: "list followed sequences", min: 0, max: 0, build: none },
  "subscriber add-seq": { args: "SEQ...", help: "follow provider sequences", min: 1, max: MANY, build: seqs },
  "subscriber remove-seq": { args: "SEQ...", help: "stop following sequences", min: 1, max: MANY, build: seqs },
  "subscriber triggers": {
    args: "[TABLE...]",
    help: "triggers on replicated tables and whether replay fires them",
    min: 0,
    max: MANY,
    build: (args) => (args.length > 0 ? { tables: args } : {}),
  },
  "subscriber trigger": {
    args: "TABLE TRIGGER always|replica|origin|disable",
    help: "when a trigger fires: always, replica (replay only), origin (local writes only), disable",
    min: 3,
    max: 3,
    build: ([table, trigger, mode]) => ({ table, trigger, mode }),
  },
  "subscriber deny-writes": { args: "TABLE...", help: "refuse writes to tables by anyone but replay", min: 1, max: MANY, build: tables },
  "subscriber allow-writes": { args: "TABLE...", help: "lift deny-writes", min: 1, max: MANY, build: tables },
  status: { args: "", help: "job lag, last tick and each table's state", min: 0, max: 0, build: none },
  ping: { args: "", help: "show a running service of the job (replay, copy or repair worker) and its state", min: 0, max: 0, build: none },
  stop: {
    args: "[INSTANCE]",
    help: "stop the job's services (or one instance) after their current unit of work (replaces londiste -s)",
    min: 0,
    max: 1,
    build: ([i]) => (i ? { instance: i } : {}),
  },
  reload: {
    args: "[INSTANCE]",
    help: "make the job's services (or one instance) re-read their config (replaces londiste -r)",
    min: 0,
    max: 1,
    build: ([i]) => (i ? { instance: i } : {}),
  },
  compare: {
    args: "[TABLE...] [--ranged] [--lock] [--force]",
    help: "row counts and checksums of both sides at one consistent point (exit 1 when any differ, is in error or was named and not compared; --ranged: the differing key ranges)",
    min: 0,
    max: MANY,
    flags: ["ranged", "lock", "force"],
    build: (args, f) => ({
      ...(args.length > 0 ? { tables: args } : {}),
      ...(f.ranged ? { ranged: true } : {}),
      ...(f.lock ? { lock: true } : {}),
      ...(f.force ? { force: true } : {}),
    }),
  },
  repair: {
    args: "[TABLE...] [--apply | --dry-run] [--lock] [--force] [--dir DIR]",
    help: "the differing rows as SQL in fix.<table>.sql (in the worker's repair_dir, or --dir inside it); --apply applies them (and resumes tables in error), --dry-run lists them",
    min: 0,
    max: MANY,
    flags: ["apply", "dryRun", "lock", "force", "dir"],
    build: (args, f) => {
      if (f.apply && f.dryRun) throw new UsageError("--apply and --dry-run do not go together");
      if (f.dryRun && f.dir !== undefined) throw new UsageError("--dry-run writes no file: --dir does not apply");
      return {
        ...(args.length > 0 ? { tables: args } : {}),
        ...(f.apply ? { apply: true } : {}),
        ...(f.dryRun ? { dry_run: true } : {}),
        ...(f.lock ? { lock: true } : {}),
        ...(f.force ? { force: true } : {}),
        ...(f.dir !== undefined ? { dir: f.dir } : {}),
      };
    },
  },
};

/** Commands every service of the job answers (replay, copy and repair workers), not only replay. */
export const CONTROL_COMMANDS = new Set(["ping", "stop", "reload"]);

/** Commands served by the job's repair workers (`londiste CONFIG repair-worker`) rather than by replay. */
export const REPAIR_COMMANDS = new Set(["compare", "repair"]);

/** Each flag's option name on the command line. */
const FLAG_OPTIONS: Record<keyof Flags, string> = {
  expectSync: "expect-sync",
  skipTruncate: "skip-truncate",
  force: "force",
  destTable: "dest-table",
  ranged: "ranged",
  lock: "lock",
  apply: "apply",
  dryRun: "dry-run",
  dir: "dir",
};

/**
 * The londiste tool's options besides --json/--timeout/--help. `reset`
 * belongs to the replay service (`londiste CONFIG replay --reset`), which
 * the launcher starts, `since` and `all` to `watch`; an admin command
 * refuses them.
 */
export const LONDISTE_OPTIONS: OptionSpec = {
  "expect-sync": { type: "boolean" },
  "skip-truncate": { type: "boolean" },
  force: { type: "boolean" },
  "dest-table": { type: "string", missing: "--dest-table needs a table name" },
  ranged: { type: "boolean" },
  lock: { type: "boolean" },
  apply: { type: "boolean" },
  "dry-run": { type: "boolean" },
  dir: { type: "string", missing: "--dir needs a directory" },
  reset: { type: "boolean" },
  instance: { type: "string", missing: "--instance needs a name" },
  since: { type: "string", missing: "--since needs a date/time or an age (30m, 2h, 1d)" },
  all: { type: "boolean" },
  port: { type: "string", missing: "--port needs a port number" },
};

/** The long-running commands the launcher runs in its own process, with the options each takes. */
export const SERVICE_COMMANDS: Record<string, { usage: string; options: string[] }> = {
  replay: { usage: "replay [--reset]", options: ["reset"] },
  copy: { usage: "copy [--instance NAME]", options: ["instance"] },
  "repair-worker": { usage: "repair-worker [--instance NAME]", options: ["instance"] },
  watch: { usage: "watch [--since TIME | --all] [--json]", options: ["json", "since", "all"] },
  dashboard: { usage: "dashboard [--port N]", options: ["port"] },
  top: { usage: "top", options: [] },
};

/** The admin command flags among parsed options (string options as given, booleans as true/false). */
export function flagsFrom(options: Record<string, string | true>): Flags {
  const text = (name: string) => (typeof options[name] === "string" ? options[name] : undefined);
  return {
    expectSync: options["expect-sync"] === true,
    skipTruncate: options["skip-truncate"] === true,
    force: options.force === true,
    destTable: text("dest-table"),
    ranged: options.ranged === true,
    lock: options.lock === true,
    apply: options.apply === true,
    dryRun: options["dry-run"] === true,
    dir: text("dir"),
  };
}

export function parseCommand(words: string[], flags: Flags): CommandLine {
  if (words.length === 0) throw new UsageError("no command given");
  const two = `${words[0]} ${words[1] ?? ""}`;
  const [key, args] = LONDISTE_COMMANDS[two] ? [two, words.slice(2)] : [words[0]!, words.slice(1)];
  const usage = LONDISTE_COMMANDS[key];
  if (!usage) {
    if (words[0] === "provider" || words[0] === "subscriber") {
      throw new UsageError(`unknown ${words[0]} command "${words[1] ?? ""}"; run londiste --help for the list`);
    }
    throw new UsageError(`unknown command "${words.join(" ")}"; run londiste --help for the list`);
  }
  if (args.length < usage.min || args.length > usage.max) throw new UsageError(`usage: londiste CONFIG ${key} ${usage.args}`.trimEnd());
  for (const [flag, name] of Object.entries(FLAG_OPTIONS) as Array<[keyof Flags, string]>) {
    const given = flag === "destTable" || flag === "dir" ? flags[flag] !== undefined : flags[flag];
    if (given && !usage.flags?.includes(flag)) throw new UsageError(`--${name} does not apply to "${key}"`);
  }
  return { command: key.replace(" ", "."), request: usage.build(args, flags) };
}

export function helpText(): string {
  const lines = [
    "usage: londiste [--json] [--timeout SECONDS] CONFIG COMMAND [ARGS]",
    "",
    "services (long-running):",
    "  replay [--reset]                 apply the job's batches to the subscriber",
    "  copy                             a copy worker: initial copies and their handover to replay",
    "  repair-worker                    serves compare and repair (any number, on any host)",
    "  watch [--since TIME | --all] [--json]",
    "                                   print the tables' state changes from now on (JetStream); --since TIME",
    "                                   (2026-11-27T10:00Z, or an age: 30m, 2h, 1d) or --all for the kept history",
    "  dashboard [--port N]             a live status page of the jobs (web, from NATS only; logs its URL)",
    "  top                              full-screen live view: lag, services, tables, copies, errors (q quits)",
    "",
    "admin commands (sent over NATS to the job's replay service; compare and repair to its repair workers):",
  ];
  for (const [name, usage] of Object.entries(LONDISTE_COMMANDS)) {
    lines.push(`  ${`${name} ${usage.args}`.padEnd(40)} ${usage.help}`);
  }
  lines.push("", "Tables without a schema are in public. Exit codes: 0 done, 1 failed, 2 bad usage/config, 3 no service answered.");
  return lines.join("\n");
}
