/**
 * The londiste command line (all but the long-running services): reads
 * the [londiste] config to find NATS and the job, sends the command to
 * that job's replay service and prints the reply. The commands that only
 * set up the databases (direct.ts) run here, on the databases, when no
 * service of the job answers; the output says so. Hints in messages are
 * printed as command lines the user can paste.
 *
 * Exit codes: 0 done, 1 the command failed (for any table), 2 bad usage
 * or config, 3 no service answered, 4 NATS does not permit the command to
 * the configured user.
 */
import { CommandError } from "../../shared/bus/replies.ts";
import { invocation, pasteableHints, shellWord } from "../../shared/cli/invocation.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { type LondisteConfig, loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { connectForCli, NoServiceError, NotPermittedError, requestReply, throwIfNotPermitted, unknownInstance } from "../../shared/cli/request.ts";
import { parseCommandLine } from "../../shared/cli/args.ts";
import { CONTROL_COMMANDS, flagsFrom, helpText, LONDISTE_OPTIONS, parseCommand, REPAIR_COMMANDS, SERVICE_COMMANDS, UsageError } from "./commands.ts";
import { runDirectly, runsDirectly } from "./direct.ts";
import { anyFailed, formatResult } from "./format.ts";
import { runTop } from "./top.ts";
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
      if (words[0] === "top" && words.length === 1 && extra.length === 0) return await runTop(configPath!);
      throw new UsageError(`usage: londiste CONFIG ${service.usage}`);
    }
    // --dir is sent as written: the worker resolves it inside its own repair_dir.
    const flags = flagsFrom(options.options);
    command = parseCommand(words, flags);
    for (const serviceOnly of ["reset", "instance", "since", "all", "port"]) {
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
    ? `start a repair worker with "${londiste} ${shellWord(options.words[0]!)} repair-worker"`
    : CONTROL_COMMANDS.has(command.command)
      ? `no service of job ${config.jobName} is running`
      : `start replay with "${londiste} ${shellWord(options.words[0]!)} replay"`;
  const configPath = options.words[0]!;
  const paste = (text: string) => pasteableHints(text, configPath);
  const name = command.command.replace(".", " ");
  try {
    const nats = natsSettingsFrom(config.values, `londiste cli ${config.jobName}`);
    const nc = await connectForCli(nats, Math.min(timeoutMs, config.commandTimeoutMs));
    try {
      const instance = command.request.instance;
      if ((command.command === "stop" || command.command === "reload") && typeof instance === "string") {
        const unknown = await unknownInstance(nc, londisteSubjects(config.subjectPrefix, config.jobName).command("ping"), instance, timeoutMs);
        if (unknown !== null) {
          process.stderr.write(`londiste: ${command.command} failed: ${unknown}\n`);
          return 1;
        }
      }
      const reply = await requestReply(nc, subject, command.request, timeoutMs, howToStart, nats);
      if ("error" in reply) {
        if (options.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
        else process.stderr.write(`londiste: ${name} failed (${reply.error.code}): ${paste(reply.error.message)}\n`);
        return 1;
      }
      process.stdout.write(`${options.json ? JSON.stringify(reply.result, null, 2) : paste(formatResult(command.command, reply.result))}\n`);
      return anyFailed(reply.result) ? 1 : 0;
    } finally {
      await nc.close();
    }
  } catch (error) {
    if (error instanceof NoServiceError) {
      // Setting up the databases needs no service: with none answering, do it here.
      if (error.reason !== "timeout" && runsDirectly(command.command)) return await direct(command.command, config, options.json, paste);
      process.stderr.write(`londiste: ${error.message}\n`);
      return 3;
    }
    if (error instanceof NotPermittedError) {
      process.stderr.write(`londiste: ${command.command.replace(".", " ")}: ${error.message}\n`);
      return 4;
    }
    throw error;
  }
}

async function direct(command: string, config: LondisteConfig, json: boolean, paste: (text: string) => string): Promise<number> {
  const name = command.replace(".", " ");
  let result;
  try {
    result = await runDirectly(command, config);
  } catch (error) {
    const code = error instanceof CommandError ? error.code : "failed";
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message: (error as Error).message }, direct: true })}\n`);
    else process.stderr.write(`londiste: ${name} failed (${code}): ${paste((error as Error).message)}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...result, direct: true }, null, 2)}\n`);
  } else {
    process.stdout.write(`${paste(formatResult(command, result))}\n`);
    process.stdout.write(`(no service of job ${config.jobName} is running: done directly on the databases)\n`);
  }
  return 0;
}

async function runWatch(configPath: string, json: boolean, start: WatchStart): Promise<number> {
  const config = loadLondisteConfig(configPath);
  const nats = natsSettingsFrom(config.values, `londiste watch ${config.jobName}`);
  let nc;
  try {
    nc = await connectForCli(nats, config.commandTimeoutMs, true);
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
    try {
      await watchStateChanges(nc, config.subjectPrefix, config.jobName, {
        json,
        replicas: config.stateStreamReplicas,
        start,
        signal: stop.signal,
        write,
        // On stderr also with --json: stdout stays one message per line.
        started: () => process.stderr.write(`${describeStart(config.jobName, start)}\n`),
      });
    } catch (error) {
      throwIfNotPermitted(error, nats);
      throw error;
    }
    if (!stop.signal.aborted) {
      process.stderr.write("londiste watch: the NATS connection closed\n");
      return 3;
    }
    return 0;
  } catch (error) {
    if (!(error instanceof NotPermittedError)) throw error;
    // Watchers may read the stream, not make it: only replay does.
    const why = error.message.includes("$JS.API.STREAM.CREATE.") ? `; the job's stream does not exist yet: replay makes it when it starts` : "";
    process.stderr.write(`londiste: watch: ${error.message}${why}\n`);
    return 4;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await nc.close();
  }
}
