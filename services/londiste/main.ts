/**
 * The londiste command line (all but the long-running services): reads
 * the [londiste] config to find NATS and the job, sends the command to
 * that job's replay service and prints the reply.
 *
 * Exit codes: 0 done, 1 the command failed (for any table), 2 bad usage
 * or config, 3 no service answered.
 */
import { invocation } from "../../shared/cli/invocation.ts";
import { resolve } from "node:path";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { connectForCli, NoServiceError, requestReply, unknownInstance } from "../../shared/cli/request.ts";
import { parseCommandLine } from "../../shared/cli/args.ts";
import { CONTROL_COMMANDS, flagsFrom, helpText, LONDISTE_OPTIONS, parseCommand, REPAIR_COMMANDS, SERVICE_COMMANDS, UsageError } from "./commands.ts";
import { anyFailed, formatResult } from "./format.ts";
import { describeStart, watchStart, type WatchStart, watchStateChanges } from "./watch.ts";

export async function runLondisteCommand(argv: string[]): Promise<number> {
  let options;
  let command;
  let config;
  try {
    options = parseCommandLine(argv, LONDISTE_OPTIONS);
    if (options === "help" || options.words.length === 0) {
      process.stdout.write(`${helpText()}\n`);
      return options === "help" ? 0 : 2;
    }
    const [configPath, ...words] = options.words;
    const service = words[0] !== undefined && Object.hasOwn(SERVICE_COMMANDS, words[0]) ? SERVICE_COMMANDS[words[0]]! : undefined;
    if (service) {
      // The launcher runs the other services itself; reaching here means extra words or options.
      const extra = Object.keys(options.options).filter((o) => !service.options.includes(o));
      if (words[0] === "watch" && words.length === 1 && extra.length === 0) {
        return await runWatch(configPath!, options.json, watchStart({ since: options.options.since, all: options.options.all }));
      }
      throw new UsageError(`usage: londiste CONFIG ${service.usage}`);
    }
    const flags = flagsFrom(options.options);
    // Sent to a worker that may run elsewhere: an absolute path, resolved here.
    if (flags.dir !== undefined) flags.dir = resolve(flags.dir);
    command = parseCommand(words, flags);
    for (const serviceOnly of ["reset", "instance", "since", "all"]) {
      if (options.options[serviceOnly] !== undefined) throw new UsageError(`--${serviceOnly} does not apply to "${command.command.replace(".", " ")}"`);
    }
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
  const londiste = invocation("londiste");
  const howToStart = repairWork
    ? `start a repair worker with "${londiste} ${options.words[0]} repair-worker"`
    : CONTROL_COMMANDS.has(command.command)
      ? `no service of job ${config.jobName} is running`
      : `start replay with "${londiste} ${options.words[0]} replay"`;
  try {
    const nc = await connectForCli(natsSettingsFrom(config.values, `londiste cli ${config.jobName}`), Math.min(timeoutMs, config.commandTimeoutMs));
    try {
      const instance = command.request.instance;
      if ((command.command === "stop" || command.command === "reload") && typeof instance === "string") {
        const unknown = await unknownInstance(nc, londisteSubjects(config.subjectPrefix, config.jobName).command("ping"), instance, timeoutMs);
        if (unknown !== null) {
          process.stderr.write(`londiste: ${command.command} failed: ${unknown}\n`);
          return 1;
        }
      }
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

async function runWatch(configPath: string, json: boolean, start: WatchStart): Promise<number> {
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
  // Whoever reads the output went away (`watch | head`): stop quietly, like other Unix tools.
  let outputClosed = false;
  const onOutputError = (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    outputClosed = true;
    stop.abort();
  };
  process.stdout.on("error", onOutputError);
  const write = (line: string) => {
    if (!outputClosed) process.stdout.write(`${line}\n`);
  };
  try {
    // NATS outages are waited out (the ordered consumer resumes where it stopped); say so on stderr.
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") process.stderr.write("londiste watch: NATS connection lost; reconnecting\n");
        else if (s.type === "reconnect") process.stderr.write("londiste watch: NATS connection back\n");
      }
    })();
    await watchStateChanges(nc, config.subjectPrefix, config.jobName, {
      json,
      start,
      signal: stop.signal,
      write,
      // On stderr also with --json: stdout stays one message per line.
      started: () => process.stderr.write(`${describeStart(config.jobName, start)}\n`),
    });
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
