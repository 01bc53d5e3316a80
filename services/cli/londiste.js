#!/usr/bin/env node
// Launcher: `londiste CONFIG replay [--reset]` runs the replay service in
// this process, `londiste CONFIG copy` a copy worker, `londiste CONFIG
// repair-worker` a compare/repair worker; every other command is sent to
// the job's services over NATS.
import { register } from "tsx/esm/api";

register();
const argv = process.argv.slice(2);
const words = argv.filter((a) => !a.startsWith("-"));
const flags = argv.filter((a) => a.startsWith("-"));
if (words[1] === "replay" && words.length === 2 && flags.every((f) => f === "--reset")) {
  const { runReplayService } = await import("../replay/main.ts");
  process.exit(await runReplayService(words[0], { reset: flags.includes("--reset") }));
} else if (words[1] === "copy" && words.length === 2 && flags.length === 0) {
  const { runCopyService } = await import("../copy/main.ts");
  process.exit(await runCopyService(words[0]));
} else if (words[1] === "repair-worker" && words.length === 2 && flags.length === 0) {
  const { runRepairService } = await import("../repair/main.ts");
  process.exit(await runRepairService(words[0]));
} else {
  const { runLondisteCommand } = await import("../londiste/main.ts");
  process.exit(await runLondisteCommand(argv));
}
