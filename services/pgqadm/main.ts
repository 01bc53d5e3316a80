/**
 * The pgqadm command line (except `ticker`, which runs the ticker service):
 * reads the [pgqadm] config to find NATS and the job, sends the command to
 * that job's ticker service and prints the reply.
 *
 * Exit codes: 0 done, 1 the service replied with an error, 2 bad usage or
 * config, 3 no service answered.
 */
import { invocation } from "../../shared/cli/invocation.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { loadTickerConfig, tickerSubjects } from "../../shared/config/pgqadm.ts";
import { connectForCli, NoServiceError, requestReply, unknownInstance } from "../../shared/cli/request.ts";
import { parseCommandLine } from "../../shared/cli/args.ts";
import { helpText, parseCommand, UsageError } from "./commands.ts";
import { formatResult } from "./format.ts";

export async function runPgqadmCommand(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseCommandLine(argv);
    if (options === "help" || options.words.length === 0) {
      process.stdout.write(`${helpText()}\n`);
      return options === "help" ? 0 : 2;
    }
  } catch (error) {
    process.stderr.write(`pgqadm: ${(error as Error).message}\n`);
    return 2;
  }
  const [configPath, ...words] = options.words;
  let config;
  let command;
  try {
    command = parseCommand(words);
    config = loadTickerConfig(configPath!);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`pgqadm: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  const timeoutMs = (options.timeoutSeconds ?? config.commandTimeoutMs / 1000) * 1000;
  const subject = tickerSubjects(config.subjectPrefix, config.jobName).command(command.command);
  try {
    const nc = await connectForCli(natsSettingsFrom(config.values, `pgqadm cli ${config.jobName}`), timeoutMs);
    try {
      const instance = command.request.instance;
      if ((command.command === "stop" || command.command === "reload") && typeof instance === "string") {
        const unknown = await unknownInstance(nc, tickerSubjects(config.subjectPrefix, config.jobName).command("ping"), instance, timeoutMs);
        if (unknown !== null) {
          process.stderr.write(`pgqadm: ${command.command} failed: ${unknown}\n`);
          return 1;
        }
      }
      const reply = await requestReply(nc, subject, command.request, timeoutMs, `start the ticker with "${invocation("pgqadm")} ${configPath} ticker"`);
      if ("error" in reply) {
        if (options.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
        else process.stderr.write(`pgqadm: ${command.command} failed (${reply.error.code}): ${reply.error.message}\n`);
        return 1;
      }
      process.stdout.write(`${options.json ? JSON.stringify(reply.result, null, 2) : formatResult(command.command, reply.result)}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  } catch (error) {
    if (error instanceof NoServiceError) {
      process.stderr.write(`pgqadm: ${error.message}\n`);
      return 3;
    }
    throw error;
  }
}
