#!/usr/bin/env node
// Launcher: `londiste CONFIG replay` runs the replay service in this
// process. The admin commands of the londiste tool are not built yet.
import { register } from "tsx/esm/api";

register();
const words = process.argv.slice(2).filter((a) => !a.startsWith("-"));
if (words[1] === "replay" && words.length === 2) {
  const { runReplayService } = await import("../replay/main.ts");
  process.exit(await runReplayService(words[0]));
} else {
  process.stderr.write("usage: londiste CONFIG replay   (other londiste commands are not available yet)\n");
  process.exit(2);
}
