/**
 * NATS permission refusals, told plainly: the server answers a publish or
 * subscribe the user may not do with a permissions violation, which the
 * client hands to the pending request (or to the status stream). This
 * finds it in an error and says which subject and which user.
 */
import { PermissionViolationError } from "@nats-io/nats-core";

/** The permissions violation in `error` or its causes, if any. */
export function permissionViolation(error: unknown): PermissionViolationError | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof PermissionViolationError) return e;
  }
  return undefined;
}

/** Who the connection logs in as, for messages: never a secret. */
export function natsUserLabel(settings: { user?: string; credsFile?: string; nkeySeedFile?: string; token?: string }): string {
  if (settings.user) return settings.user;
  if (settings.credsFile) return `the user of ${settings.credsFile}`;
  if (settings.nkeySeedFile) return `the nkey of ${settings.nkeySeedFile}`;
  if (settings.token) return "the token's user";
  return "an anonymous user";
}

/** "not permitted on SUBJECT as USER", with a hint when the refused subject is the reply inbox. */
export function notPermittedMessage(violation: PermissionViolationError, user: string, inboxPrefix = "_INBOX"): string {
  const what = violation.operation === "subscription" ? " (subscribing)" : "";
  const hint =
    violation.operation === "subscription" && violation.subject.startsWith(`${inboxPrefix}.`)
      ? `; replies come on ${inboxPrefix}.>: set nats_inbox_prefix to a prefix this user may subscribe to`
      : "";
  return `not permitted on ${violation.subject} as ${user}${what}${hint}`;
}
