/**
 * Every admin command of a londiste job, served over NATS by each of its
 * replay instances (active or standing by; one answers each request).
 * Subjects: `<prefix>.londiste.<job>.<command>`, e.g.
 * `skytools.londiste.myjob.provider.add`.
 */
import type { CommandSpec } from "../../shared/bus/command-service.ts";
import type { AdminContext } from "./admin/context.ts";
import { providerCommands } from "./admin/provider-commands.ts";
import { statusCommand } from "./admin/status-command.ts";
import { subscriberCommands } from "./admin/subscriber-commands.ts";

export function londisteAdminCommands(ctx: AdminContext): Record<string, CommandSpec> {
  return { ...providerCommands(ctx), ...subscriberCommands(ctx), status: statusCommand(ctx) };
}
