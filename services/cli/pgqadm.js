#!/usr/bin/env node
// Launcher: `pgqadm CONFIG ticker` runs the ticker service in this process;
// every other command is sent to a running ticker over NATS.
import { register } from "tsx/esm/api";

register();
const argv = process.argv.slice(2);
const words = argv.filter((a, i) => !a.startsWith("-") && argv[i - 1] !== "--timeout");
if (words[1] === "ticker" && words.length === 2) {
  const { runTickerService } = await import("../ticker/main.ts");
  process.exit(await runTickerService(words[0]));
} else {
  const { runPgqadmCommand } = await import("../pgqadm/main.ts");
  process.exit(await runPgqadmCommand(argv));
}
