/**
 * The pgqadm command line (except `ticker`, which runs the ticker service):
 * reads the [pgqadm] config to find NATS and the job, sends the command to
 * that job's ticker service and prints the reply. `install` only sets up
 * the database: with no ticker answering, it runs here, on the database,
 * and says so. `pgqadm --sql-dir` prints where the SQL files are, for
 * installing with psql alone.
 *
 * Exit codes: 0 done, 1 the service replied with an error, 2 bad usage or
 * config, 3 no service answered, 4 NATS does not permit the command to the
 * configured user.
 */
import pg from "pg";
import { invocation, pasteableHints, shellWord } from "../../shared/cli/invocation.ts";
import { packagePath } from "../../shared/package-root.ts";
import { installPgq, pgVersions } from "../../shared/pgq/install.ts";
import { handlePoolErrors } from "../../shared/db/pool-errors.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { ConfigError } from "../../shared/config/load.ts";
import { loadTickerConfig, type TickerConfig, tickerSubjects } from "../../shared/config/pgqadm.ts";
import { connectForCli, NoServiceError, NotPermittedError, requestReply, unknownInstance } from "../../shared/cli/request.ts";
import { type OptionSpec, parseCommandLine } from "../../shared/cli/args.ts";
import { helpText, parseCommand, UsageError } from "./commands.ts";
import { formatResult } from "./format.ts";
import { LOGS_OPTIONS, logsFilter, runLogs } from "./logs.ts";

const PGQADM_OPTIONS: OptionSpec = { "sql-dir": { type: "boolean" }, ...LOGS_OPTIONS };

export async function runPgqadmCommand(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseCommandLine(argv, PGQADM_OPTIONS);
    if (options !== "help" && options.options["sql-dir"]) {
      if (options.words.length > 0) throw new UsageError("--sql-dir takes no config or command: pgqadm --sql-dir");
      // sql/pgq/install.sql and sql/londiste/install.sql are under it.
      process.stdout.write(`${packagePath("sql")}\n`);
      return 0;
    }
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
    if (words[0] === "logs") return await logs(configPath!, words, options.options, options.json);
    const logsOption = Object.keys(LOGS_OPTIONS).find((o) => options.options[o] !== undefined);
    if (logsOption) throw new UsageError(`--${logsOption} applies only to "logs"`);
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
  const paste = (text: string) => pasteableHints(text, configPath!);
  try {
    const nats = natsSettingsFrom(config.values, `pgqadm cli ${config.jobName}`);
    const nc = await connectForCli(nats, timeoutMs);
    try {
      const instance = command.request.instance;
      if ((command.command === "stop" || command.command === "reload") && typeof instance === "string") {
        const unknown = await unknownInstance(nc, tickerSubjects(config.subjectPrefix, config.jobName).command("ping"), instance, timeoutMs);
        if (unknown !== null) {
          process.stderr.write(`pgqadm: ${command.command} failed: ${unknown}\n`);
          return 1;
        }
      }
      const reply = await requestReply(nc, subject, command.request, timeoutMs, `start the ticker with "${invocation("pgqadm")} ${shellWord(configPath!)} ticker"`, nats);
      if ("error" in reply) {
        if (options.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
        else process.stderr.write(`pgqadm: ${command.command} failed (${reply.error.code}): ${paste(reply.error.message)}\n`);
        return 1;
      }
      process.stdout.write(`${options.json ? JSON.stringify(reply.result, null, 2) : paste(formatResult(command.command, reply.result))}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  } catch (error) {
    if (error instanceof NoServiceError) {
      // Installing needs no ticker: with none answering, do it here (the Skytools order installs PgQ first).
      if (error.reason !== "timeout" && command.command === "install") return await installDirectly(config, options.json);
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

async function installDirectly(config: TickerConfig, json: boolean): Promise<number> {
  // A lost connection fails the statement using it, which the command reports.
  const pool = handlePoolErrors(new pg.Pool({ ...config.db, max: 1, application_name: `pgqadm cli ${config.jobName}` }), () => {});
  try {
    await installPgq(pool);
    const result = await pgVersions(pool);
    if (json) process.stdout.write(`${JSON.stringify({ ...result, direct: true }, null, 2)}\n`);
    else process.stdout.write(`${formatResult("install", result)}\n(no ticker of job ${config.jobName} is running: installed directly in the database)\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`pgqadm: install failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}

/** `pgqadm CONF logs ...`: reads the config's log_db (logs.ts). */
async function logs(configPath: string, words: string[], options: Record<string, string | true>, json: boolean): Promise<number> {
  if (words.length > 1) throw new UsageError("usage: pgqadm CONFIG logs [--service S] [--since TIME] [--level LEVEL] [--limit N]");
  const filter = logsFilter(options);
  const config = loadTickerConfig(configPath);
  if (config.logDb === undefined) throw new ConfigError(`${configPath}: no log_db set: the services' log records go to a log database only with log_db = DSN`);
  return runLogs(config.logDb, filter, json);
}

