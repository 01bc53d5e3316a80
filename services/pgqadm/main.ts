/**
 * The pgqadm command line (except `ticker`, which runs the ticker service):
 * reads the [pgqadm] config to find NATS and the job, sends the command to
 * that job's ticker service and prints the reply.
 *
 * Exit codes: 0 done, 1 the service replied with an error, 2 bad usage or
 * config, 3 no service answered, 4 NATS does not permit the command to the
 * configured user.
 */
import { invocation } from "../../shared/cli/invocation.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { loadTickerConfig, tickerSubjects } from "../../shared/config/pgqadm.ts";
import { connectForCli, NoServiceError, NotPermittedError, requestReply } from "../../shared/cli/request.ts";
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
    const nats = natsSettingsFrom(config.values, `pgqadm cli ${config.jobName}`);
    const nc = await connectForCli(nats, timeoutMs);
    try {
      const reply = await requestReply(nc, subject, command.request, timeoutMs, `start the ticker with "${invocation("pgqadm")} ${configPath} ticker"`, nats);
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
    if (error instanceof NotPermittedError) {
      process.stderr.write(`pgqadm: ${command.command}: ${error.message}\n`);
      return 4;
    }
    throw error;
  }
}
