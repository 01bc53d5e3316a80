#!/usr/bin/env node
// Launcher: `pgqadm CONFIG ticker` runs the ticker service in this process;
// every other command is sent to a running ticker over NATS. Anything that
// does not parse goes to the command line, which explains the problem.
import { register } from "tsx/esm/api";

register();
const argv = process.argv.slice(2);
const { tryParseCommandLine } = await import("../../shared/cli/args.ts");
const words = tryParseCommandLine(argv)?.words ?? [];
if (words[1] === "ticker" && words.length === 2) {
  const { runTickerService } = await import("../ticker/main.ts");
  process.exit(await runTickerService(words[0]));
} else {
  const { runPgqadmCommand } = await import("../pgqadm/main.ts");
  process.exit(await runPgqadmCommand(argv));
}
