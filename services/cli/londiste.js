#!/usr/bin/env node
// Launcher: `londiste CONFIG replay [--reset]` runs the replay service in
// this process, `londiste CONFIG copy [--instance NAME]` a copy worker,
// `londiste CONFIG repair-worker [--instance NAME]` a compare/repair worker, `londiste CONFIG dashboard
// [--port N]` the status page; every other command is sent to
// the job's services over NATS. Anything that does not parse goes to the
// command line, which explains the problem.
import { load } from "./load.js";

const argv = process.argv.slice(2);
const { tryParseCommandLine } = await load("shared/cli/args");
const { LONDISTE_OPTIONS, SERVICE_COMMANDS } = await load("services/londiste/commands");
const parsed = tryParseCommandLine(argv, LONDISTE_OPTIONS);
const [config, command, ...rest] = parsed?.words ?? [];
const service = parsed && command !== "watch" && rest.length === 0 && Object.hasOwn(SERVICE_COMMANDS, command ?? "") ? SERVICE_COMMANDS[command] : undefined;
const runsService = service && Object.keys(parsed.options).every((o) => service.options.includes(o));
if (runsService && command === "replay") {
  const { runReplayService } = await load("services/replay/main");
  process.exit(await runReplayService(config, { reset: parsed.options.reset === true }));
} else if (runsService && command === "copy") {
  const { runCopyService } = await load("services/copy/main");
  process.exit(await runCopyService(config, { instance: parsed.options.instance }));
} else if (runsService && command === "repair-worker") {
  const { runRepairService } = await load("services/repair/main");
  process.exit(await runRepairService(config, { instance: parsed.options.instance }));
} else if (runsService && command === "dashboard") {
  process.exit(await (await load("services/dashboard/main")).runDashboard(config, { port: parsed.options.port }));
} else {
  const { runLondisteCommand } = await load("services/londiste/main");
  process.exit(await runLondisteCommand(argv));
}
