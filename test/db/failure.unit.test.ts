// The one failure taxonomy (shared/db/failure.ts), as a table of SQLSTATEs and socket errors.
import { describe, expect, it } from "vitest";
import {
  ConnectionLost,
  failureKind,
  isConnectionError,
  isDataError,
  isNotInstalledError,
  isPrivilegeError,
  isTransientError,
  privilegeHint,
  sqlState,
  withPrivilegeHint,
} from "../../shared/db/failure.ts";

const pgError = (code: string, message = "x") => Object.assign(new Error(message), { code });
const named = (name: string) => Object.assign(new Error("x"), { name });

const table: [string, unknown, "transient" | "privilege" | "data"][] = [
  ["08006 connection failure", pgError("08006"), "transient"],
  ["08001 cannot connect", pgError("08001"), "transient"],
  ["25006 read-only transaction (a standby)", pgError("25006"), "transient"],
  ["25P02 in failed transaction", pgError("25P02"), "transient"],
  ["40001 serialization failure", pgError("40001"), "transient"],
  ["40P01 deadlock", pgError("40P01"), "transient"],
  ["53100 disk full", pgError("53100"), "transient"],
  ["53300 too many connections", pgError("53300"), "transient"],
  ["57014 query canceled", pgError("57014"), "transient"],
  ["57P01 admin shutdown", pgError("57P01"), "transient"],
  ["57P03 cannot connect now", pgError("57P03"), "transient"],
  ["58030 io error", pgError("58030"), "transient"],
  ["XX000 internal error", pgError("XX000"), "transient"],
  ["55P03 lock not available", pgError("55P03"), "transient"],
  ["55006 object in use", pgError("55006"), "transient"],
  ["ECONNREFUSED", Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5"), { code: "ECONNREFUSED" }), "transient"],
  ["ECONNRESET", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }), "transient"],
  ["pg: Connection terminated unexpectedly", new Error("Connection terminated unexpectedly"), "transient"],
  ["ConnectionLost (a connection's error or end event)", new ConnectionLost("the copy's provider connection was lost"), "transient"],
  ["an unknown error without a code", new Error("something odd"), "transient"],
  ["42501 insufficient privilege", pgError("42501"), "privilege"],
  ["28P01 invalid password", pgError("28P01"), "privilege"],
  ["28000 invalid authorization", pgError("28000"), "privilege"],
  ["3D000 no such database", pgError("3D000"), "privilege"],
  ["22P02 invalid text representation", pgError("22P02"), "data"],
  ["22003 numeric out of range", pgError("22003"), "data"],
  ["23505 unique violation", pgError("23505"), "data"],
  ["23503 foreign key violation", pgError("23503"), "data"],
  ["42703 undefined column", pgError("42703"), "data"],
  ["42P01 undefined table (a user table)", pgError("42P01"), "data"],
  ["P0001 a trigger's RAISE", pgError("P0001"), "data"],
  ["55000 object not in prerequisite state", pgError("55000"), "data"],
  ["ApplyError", named("ApplyError"), "data"],
  ["RecordTextError", named("RecordTextError"), "data"],
  ["TableFailure", named("TableFailure"), "data"],
];

describe("failure taxonomy", () => {
  it.each(table)("%s is %s", (_label, error, kind) => {
    expect(failureKind(error)).toBe(kind);
    expect(isTransientError(error)).toBe(kind === "transient");
    expect(isPrivilegeError(error)).toBe(kind === "privilege");
    expect(isDataError(error)).toBe(kind === "data");
  });

  it("connection errors are a subset of the transient ones", () => {
    for (const [, error, kind] of table) if (isConnectionError(error)) expect(kind).toBe("transient");
    expect(isConnectionError(pgError("40001"))).toBe(false);
    expect(isConnectionError(pgError("57P01"))).toBe(true);
    expect(isConnectionError(new Error("Postgres is not currently accepting connections"))).toBe(true);
    expect(isConnectionError(new ConnectionLost("lost"))).toBe(true);
  });

  it("not installed: missing schema, table or function of our own", () => {
    expect(["3F000", "42P01", "42883"].map((c) => isNotInstalledError(pgError(c)))).toEqual([true, true, true]);
    expect(["42703", "08006", "42501"].map((c) => isNotInstalledError(pgError(c)))).toEqual([false, false, false]);
    expect(isNotInstalledError(new Error("x"))).toBe(false);
  });

  it("sqlState reads code or sqlState, and ignores socket codes", () => {
    expect(sqlState(pgError("23505"))).toBe("23505");
    expect(sqlState({ sqlState: "40001" })).toBe("40001");
    expect(sqlState(Object.assign(new Error(), { code: "ECONNRESET" }))).toBeUndefined();
    expect(sqlState(null)).toBeUndefined();
  });
});

describe("the grant a privilege error asks for", () => {
  const denied = (message: string) => pgError("42501", message);
  it.each([
    ['permission denied to set parameter "session_replication_role"', "set local session_replication_role = replica",
      "GRANT SET ON PARAMETER session_replication_role TO skytools_replay (PostgreSQL 15 or later; before 15 only a superuser may set it)"],
    ["permission denied for table t", "insert into public.t values ($1)", "GRANT INSERT ON TABLE t TO skytools_replay"],
    ["permission denied for table t", "truncate only public.t", "GRANT TRUNCATE ON TABLE t TO skytools_replay"],
    ["permission denied for table queue", "select 1 from pgq.queue where queue_name = $1 for share", "GRANT UPDATE ON TABLE queue TO skytools_replay"],
    ["permission denied for table t", "select count(*) from public.t", "GRANT SELECT ON TABLE t TO skytools_replay"],
    ["permission denied for sequence s", "select setval('public.s', 5)", "GRANT USAGE, SELECT, UPDATE ON SEQUENCE s TO skytools_replay"],
    ["permission denied for schema londiste", "select 1", "GRANT USAGE ON SCHEMA londiste TO skytools_replay (and CREATE when it must create objects there)"],
    ["permission denied for function create_queue", "select pgq.create_queue($1)", "GRANT EXECUTE ON FUNCTION create_queue TO skytools_replay"],
    ["permission denied for database app", "create schema pgq", "GRANT CONNECT, CREATE ON DATABASE app TO skytools_replay"],
    ["must be owner of relation t", "select londiste.subscriber_deny_writes($1, $2)",
      "GRANT <the owner of table t> TO skytools_replay: only its owner (or a member of the owner role) may do this"],
  ])("%s (%s)", (message, statement, grant) => {
    expect(privilegeHint(denied(message), "skytools_replay", statement)).toBe(grant);
  });

  it("a function call hides the table privilege: the hint lists the candidates", () => {
    expect(privilegeHint(denied("permission denied for table consumer"), "r", "select pgq.register_consumer($1, $2)")).toBe(
      "GRANT the privilege the statement needs (SELECT, INSERT, UPDATE, DELETE, TRUNCATE or TRIGGER; UPDATE for row locks) ON TABLE consumer TO r",
    );
  });

  it("quotes a role name that needs it; other errors get no hint; the message is extended once", () => {
    expect(privilegeHint(denied("permission denied for schema x"), 'Odd "Role"', "select 1")).toContain('TO "Odd ""Role"""');
    expect(privilegeHint(pgError("23505", "duplicate key"), "r")).toBeUndefined();
    expect(privilegeHint(pgError("28P01", "password authentication failed"), "r")).toBeUndefined();
    const error = denied("permission denied for table t");
    withPrivilegeHint(error, "r", "delete from t");
    withPrivilegeHint(error, "r", "delete from t");
    expect(error.message).toBe(
      "permission denied for table t — missing grant: GRANT DELETE ON TABLE t TO r; sql/londiste/roles.sql grants what each service needs (docs/security.md)",
    );
    expect(failureKind(error)).toBe("privilege");
  });
});
