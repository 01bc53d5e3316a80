/**
 * How the user can run one of our commands from their shell, for hints
 * that they can paste: the bare name when it is on their PATH, else
 * `npx <name>` (run through npx, or from a checkout without a global
 * install).
 */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export function invocation(command: "londiste" | "pgqadm", env: NodeJS.ProcessEnv = process.env): string {
  // npx puts the project's node_modules/.bin on PATH: that PATH is not the user's.
  if (env.npm_command === "exec" || env.npm_lifecycle_event === "npx") return `npx ${command}`;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir || dir.includes("node_modules")) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return command;
    } catch {
      // not in this one
    }
  }
  return `npx ${command}`;
}
