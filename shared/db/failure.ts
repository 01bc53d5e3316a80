/**
 * The one failure taxonomy of every service. A failure is one of:
 *
 *  - transient: about the moment, not the data (lost or refused connection,
 *    server shutting down, serialization failure or deadlock, lock timeout,
 *    object in use, out of resources, transaction state). Roll back and do
 *    the same work again after a pause.
 *  - privilege: the role may not do what it must (insufficient privilege,
 *    authorization, a database that does not exist). An operator has to act;
 *    the work is retried, not given up, so a GRANT is enough to go on.
 *  - data: doing it again gives the same result (a value that does not
 *    convert, a duplicate key, a missing column, a trigger's RAISE, a change
 *    that cannot be decoded or applied). Replay and the copy put the table
 *    into state error with the message; the other tables go on.
 *
 * Apart from these, `isNotInstalledError` recognises the errors a statement
 * on our own schemas (pgq, londiste) gets before they are installed: those
 * mean "wait for the install", and are only meaningful for such statements
 * (a user table missing on the subscriber is the table's data error).
 *
 * For a privilege error, `privilegeHint` names the GRANT that would let the
 * statement through (the mapping from PostgreSQL's messages lives here, next
 * to the classification); shared/db/where.ts adds it to every error of a
 * service's connections.
 *
 * Pure: reads the error's SQLSTATE (`code`), a Node socket code, or the
 * name of our own error classes. The table test is test/db/failure.unit.test.ts.
 */

export type FailureKind = "transient" | "privilege" | "data";

/** SQLSTATE classes that say nothing about the data. */
const TRANSIENT_CLASSES = new Set([
  "08", // connection exception
  "25", // invalid transaction state (read-only standby, aborted transaction)
  "40", // serialization failure, deadlock
  "53", // insufficient resources
  "57", // operator intervention: cancel, shutdown, cannot connect now
  "58", // system error
  "XX", // internal error
]);
/** Single SQLSTATEs outside those classes that are about the moment. */
const TRANSIENT_CODES = new Set([
  "55P03", // lock_not_available (lock_timeout, NOWAIT)
  "55006", // object_in_use
]);
/** SQLSTATE classes and codes that say the role or the connection settings are wrong. */
const PRIVILEGE_CLASSES = new Set(["28", "0L", "0P"]); // authorization, grantor, role specification
const PRIVILEGE_CODES = new Set([
  "42501", // insufficient_privilege
  "3D000", // invalid_catalog_name: the configured database does not exist
]);
/** SQLSTATEs a statement on pgq.* / londiste.* gets before the schema is installed. */
const NOT_INSTALLED_CODES = new Set([
  "3F000", // invalid_schema_name
  "42P01", // undefined_table
  "42883", // undefined_function
]);
/** Node socket errors of a connection that could not be made or was lost. */
const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
/** Messages of node-postgres for a lost or failed connection, which carry no code. */
const CONNECTION_MESSAGES = /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|is not currently accepting connections|Client was closed and is not queryable/;
/** Errors of our own that say a connection was lost (found out from its events, not from a statement). */
const CONNECTION_LOST_NAMES = new Set(["ConnectionLost"]);
/** Errors of our own whose cause is the data. */
const DATA_ERROR_NAMES = new Set(["ApplyError", "RecordTextError", "TableFailure"]);

/** The five-character SQLSTATE of a database error, if it has one. */
export function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; sqlState?: unknown } | null;
  if (typeof e?.code === "string" && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
  if (typeof e?.sqlState === "string") return e.sqlState;
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A connection lost while no statement was waiting on it (its `error` or `end` event), raised by
 * the work that used it: a connection error, so the work is retried.
 */
export class ConnectionLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConnectionLost";
  }
}

/** A connection that could not be made, was lost, or whose server is shutting down. */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof Error && CONNECTION_LOST_NAMES.has(error.name)) return true;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && SOCKET_CODES.has(code)) return true;
  const state = sqlState(error);
  if (state !== undefined && (state.startsWith("08") || state === "57P01" || state === "57P02" || state === "57P03")) return true;
  return CONNECTION_MESSAGES.test(messageOf(error));
}

/** The role lacks a privilege, or cannot log in to the configured database. */
export function isPrivilegeError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && (PRIVILEGE_CODES.has(state) || PRIVILEGE_CLASSES.has(state.slice(0, 2)));
}

/** A lock not granted within lock_timeout (or NOWAIT): someone else holds the object. */
export function isLockNotAvailable(error: unknown): boolean {
  return sqlState(error) === "55P03";
}

/** About the moment: roll back and retry. Errors without a SQLSTATE count here unless they are our own data errors. */
export function isTransientError(error: unknown): boolean {
  return failureKind(error) === "transient";
}

/** About the data: the same work fails the same way again. */
export function isDataError(error: unknown): boolean {
  return failureKind(error) === "data";
}

/** For a statement on pgq.* or londiste.*: the schema is not installed (yet). */
export function isNotInstalledError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && NOT_INSTALLED_CODES.has(state);
}

export function failureKind(error: unknown): FailureKind {
  if (isConnectionError(error)) return "transient";
  if (isPrivilegeError(error)) return "privilege";
  const state = sqlState(error);
  if (state === undefined) return error instanceof Error && DATA_ERROR_NAMES.has(error.name) ? "data" : "transient";
  if (TRANSIENT_CLASSES.has(state.slice(0, 2)) || TRANSIENT_CODES.has(state)) return "transient";
  return "data";
}

// ------------------------------------------------------------------ what to grant

/** Where every grant a service needs is written down. */
export const GRANTS_REFERENCE = "sql/londiste/roles.sql grants what each service needs (docs/security.md)";

/** The table privilege a statement needs, from its first words (undefined when a function call hides it). */
function tablePrivilegeOf(statement: string | undefined): string | undefined {
  const text = statement?.trim().toLowerCase() ?? "";
  const verb = /^(insert|update|delete|truncate|lock|select|copy)\b/.exec(text)?.[1];
  if (verb === undefined) return undefined;
  if (verb === "lock" || (verb === "select" && /\bfor\s+(update|no key update|share|key share)\b/.test(text))) return "UPDATE";
  if (verb === "select") return /\(\s*select\b|^select\s+[a-z_]+\.[a-z_]+\s*\(/.test(text) ? undefined : "SELECT";
  if (verb === "copy") return /\bfrom\s+stdin\b/.test(text) ? "INSERT" : "SELECT";
  return verb.toUpperCase();
}

/**
 * For an error that says the role lacks a privilege (insufficient_privilege,
 * or a setting only some roles may change): the GRANT that would let the
 * statement through, naming `role`; undefined for any other error. Pure:
 * reads the error's SQLSTATE and message, and the statement's first words.
 */
export function privilegeHint(error: unknown, role: string, statement?: string): string | undefined {
  if (sqlState(error) !== "42501") return undefined;
  const message = messageOf(error);
  const who = quoteRole(role);
  let m = /permission denied to set parameter "([^"]+)"/.exec(message);
  if (m) return `GRANT SET ON PARAMETER ${m[1]} TO ${who} (PostgreSQL 15 or later; before 15 only a superuser may set it)`;
  m = /permission denied for (table|relation|view|materialized view) (.+)$/m.exec(message);
  if (m) {
    const privilege = tablePrivilegeOf(statement) ?? "the privilege the statement needs (SELECT, INSERT, UPDATE, DELETE, TRUNCATE or TRIGGER; UPDATE for row locks)";
    return `GRANT ${privilege} ON TABLE ${m[2]} TO ${who}`;
  }
  m = /permission denied for sequence (.+)$/m.exec(message);
  if (m) return `GRANT USAGE, SELECT, UPDATE ON SEQUENCE ${m[1]} TO ${who}`;
  m = /permission denied for schema (.+)$/m.exec(message);
  if (m) return `GRANT USAGE ON SCHEMA ${m[1]} TO ${who} (and CREATE when it must create objects there)`;
  m = /permission denied for (function|procedure) (.+)$/m.exec(message);
  if (m) return `GRANT EXECUTE ON ${m[1]!.toUpperCase()} ${m[2]} TO ${who}`;
  m = /permission denied for database (.+)$/m.exec(message);
  if (m) return `GRANT CONNECT, CREATE ON DATABASE ${m[1]} TO ${who}`;
  m = /must be owner of (\w+(?: \w+)?) (.+)$/m.exec(message);
  if (m) return `GRANT <the owner of ${m[1] === "relation" ? "table" : m[1]} ${m[2]}> TO ${who}: only its owner (or a member of the owner role) may do this`;
  return undefined;
}

/** The message of a privilege error with the grant to add, for logs and replies; others unchanged. */
export function withPrivilegeHint(error: unknown, role: string, statement?: string): unknown {
  const hint = privilegeHint(error, role, statement);
  if (hint === undefined || !(error instanceof Error) || error.message.includes(" — missing grant: ")) return error;
  error.message = `${error.message} — missing grant: ${hint}; ${GRANTS_REFERENCE}`;
  return error;
}

function quoteRole(role: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(role) ? role : `"${role.replace(/"/g, '""')}"`;
}
