/**
 * How the user can run one of our commands from their shell, for hints
 * that they can paste: the bare name when it is on their PATH, else
 * `npx <name>` (run through npx, or from a checkout without a global
 * install); and hints written by services as `londiste CONFIG ...` turned
 * into that form with the user's own config path.
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

/** A word as the shell reads it back: quoted when it holds anything but safe characters. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/**
 * Rewrites the hints in a message (`londiste CONFIG subscriber add t`, `pgqadm CONF install`)
 * into a command line the user can paste: their invocation and their config path.
 */
export function pasteableHints(text: string, configPath: string, env: NodeJS.ProcessEnv = process.env): string {
  const config = shellWord(configPath);
  return text.replace(/\b(londiste|pgqadm) CONF(?:IG)?\b/g, (_, command: "londiste" | "pgqadm") => `${invocation(command, env)} ${config}`);
}
