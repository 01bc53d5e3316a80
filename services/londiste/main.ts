/**
 * The londiste command line (all but the long-running services): reads
 * the [londiste] config to find NATS and the job, sends the command to
 * that job's replay service and prints the reply.
 *
 * Exit codes: 0 done, 1 the command failed (for any table), 2 bad usage
 * or config, 3 no service answered.
 */
import { resolve } from "node:path";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { connectForCli, NoServiceError, requestReply } from "../../shared/cli/request.ts";
import { type Flags, helpText, parseCommand, REPAIR_COMMANDS, UsageError } from "./commands.ts";
import { anyFailed, formatResult } from "./format.ts";
import { watchStateChanges } from "./watch.ts";

interface Options {
  json: boolean;
  timeoutSeconds: number | undefined;
  flags: Flags;
  words: string[];
}

export function parseOptions(argv: string[]): Options | "help" {
  const options: Options = {
    json: false,
    timeoutSeconds: undefined,
    flags: {
      expectSync: false,
      skipTruncate: false,
      force: false,
      destTable: undefined,
      ranged: false,
      lock: false,
      apply: false,
      dryRun: false,
      dir: undefined,
    },
    words: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--json") options.json = true;
    else if (arg === "-h" || arg === "--help") return "help";
    else if (arg === "--expect-sync") options.flags.expectSync = true;
    else if (arg === "--skip-truncate") options.flags.skipTruncate = true;
    else if (arg === "--force") options.flags.force = true;
    else if (arg === "--dest-table" || arg.startsWith("--dest-table=")) {
      const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[++i];
      if (!value) throw new UsageError("--dest-table needs a table name");
      options.flags.destTable = value;
    } else if (arg === "--ranged") options.flags.ranged = true;
    else if (arg === "--lock") options.flags.lock = true;
    else if (arg === "--apply") options.flags.apply = true;
    else if (arg === "--dry-run") options.flags.dryRun = true;
    else if (arg === "--dir" || arg.startsWith("--dir=")) {
      const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[++i];
      if (!value) throw new UsageError("--dir needs a directory");
      // Sent to a worker that may run elsewhere: an absolute path, resolved here.
      options.flags.dir = resolve(value);
    } else if (arg === "--timeout") {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value <= 0) throw new UsageError("--timeout needs a number of seconds");
      options.timeoutSeconds = value;
    } else if (arg.startsWith("-") && arg !== "-") throw new UsageError(`unknown option ${arg}`);
    else options.words.push(arg);
  }
  return options;
}

export async function runLondisteCommand(argv: string[]): Promise<number> {
  let options: Options | "help";
  let command;
  let config;
  try {
    options = parseOptions(argv);
    if (options === "help" || options.words.length === 0) {
      process.stdout.write(`${helpText()}\n`);
      return options === "help" ? 0 : 2;
    }
    const [configPath, ...words] = options.words;
    if (words.length === 1 && words[0] === "watch") return await runWatch(configPath!, options.json);
    command = parseCommand(words, options.flags);
    config = loadLondisteConfig(configPath!);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`londiste: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  const repairWork = REPAIR_COMMANDS.has(command.command);
  // compare and repair reply when their work is done: minutes to hours on big tables.
  const timeoutMs = (options.timeoutSeconds ?? (repairWork ? 24 * 3600 : config.commandTimeoutMs / 1000)) * 1000;
  const subject = londisteSubjects(config.subjectPrefix, config.jobName).command(command.command);
  const howToStart = repairWork
    ? `start a repair worker with "londiste ${options.words[0]} repair-worker"`
    : `start replay with "londiste ${options.words[0]} replay"`;
  try {
    const nc = await connectForCli(natsSettingsFrom(config.values, `londiste cli ${config.jobName}`), Math.min(timeoutMs, config.commandTimeoutMs));
    try {
      const reply = await requestReply(nc, subject, command.request, timeoutMs, howToStart);
      if ("error" in reply) {
        if (options.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
        else process.stderr.write(`londiste: ${command.command.replace(".", " ")} failed (${reply.error.code}): ${reply.error.message}\n`);
        return 1;
      }
      process.stdout.write(`${options.json ? JSON.stringify(reply.result, null, 2) : formatResult(command.command, reply.result)}\n`);
      return anyFailed(reply.result) ? 1 : 0;
    } finally {
      await nc.close();
    }
  } catch (error) {
    if (error instanceof NoServiceError) {
      process.stderr.write(`londiste: ${error.message}\n`);
      return 3;
    }
    throw error;
  }
}

async function runWatch(configPath: string, json: boolean): Promise<number> {
  const config = loadLondisteConfig(configPath);
  let nc;
  try {
    nc = await connectForCli(natsSettingsFrom(config.values, `londiste watch ${config.jobName}`), config.commandTimeoutMs, true);
  } catch (error) {
    process.stderr.write(`londiste: ${(error as Error).message}\n`);
    return 3;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    if (!json) process.stderr.write(`watching the state changes of job ${config.jobName} (Ctrl-C stops)\n`);
    // NATS outages are waited out (the ordered consumer resumes where it stopped); say so on stderr.
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") process.stderr.write("londiste watch: NATS connection lost; reconnecting\n");
        else if (s.type === "reconnect") process.stderr.write("londiste watch: NATS connection back\n");
      }
    })();
    await watchStateChanges(nc, config.subjectPrefix, config.jobName, { json, signal: stop.signal, write: (line) => process.stdout.write(`${line}\n`) });
    if (!stop.signal.aborted) {
      process.stderr.write("londiste watch: the NATS connection closed\n");
      return 3;
    }
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await nc.close();
  }
}
