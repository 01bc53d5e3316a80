#!/usr/bin/env node
// Launcher: `londiste CONFIG replay [--reset]` runs the replay service in
// this process, `londiste CONFIG copy` a copy worker, `londiste CONFIG
// repair-worker` a compare/repair worker; every other command is sent to
// the job's services over NATS. Anything that does not parse goes to the
// command line, which explains the problem.
import { register } from "tsx/esm/api";

register();
const argv = process.argv.slice(2);
const { tryParseCommandLine } = await import("../../shared/cli/args.ts");
const { LONDISTE_OPTIONS, SERVICE_COMMANDS } = await import("../londiste/commands.ts");
const parsed = tryParseCommandLine(argv, LONDISTE_OPTIONS);
const [config, command, ...rest] = parsed?.words ?? [];
const service = parsed && command !== "watch" && rest.length === 0 && Object.hasOwn(SERVICE_COMMANDS, command ?? "") ? SERVICE_COMMANDS[command] : undefined;
const runsService = service && Object.keys(parsed.options).every((o) => service.options.includes(o));
if (runsService && command === "replay") {
  const { runReplayService } = await import("../replay/main.ts");
  process.exit(await runReplayService(config, { reset: parsed.options.reset === true }));
} else if (runsService && command === "copy") {
  const { runCopyService } = await import("../copy/main.ts");
  process.exit(await runCopyService(config));
} else if (runsService && command === "repair-worker") {
  const { runRepairService } = await import("../repair/main.ts");
  process.exit(await runRepairService(config));
} else {
  const { runLondisteCommand } = await import("../londiste/main.ts");
  process.exit(await runLondisteCommand(argv));
}
