#!/usr/bin/env node
// Launcher: `pgqadm CONFIG ticker` runs the ticker service in this process;
// every other command is sent to a running ticker over NATS. Anything that
// does not parse goes to the command line, which explains the problem.
import { load } from "./load.js";

const argv = process.argv.slice(2);
const { tryParseCommandLine } = await load("shared/cli/args");
const words = tryParseCommandLine(argv)?.words ?? [];
if (words[1] === "ticker" && words.length === 2) {
  const { runTickerService } = await load("services/ticker/main");
  process.exit(await runTickerService(words[0]));
} else {
  const { runPgqadmCommand } = await load("services/pgqadm/main");
  process.exit(await runPgqadmCommand(argv));
}
