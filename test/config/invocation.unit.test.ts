// Hints name a command the way the user can paste it (shared/cli/invocation.ts), and the NATS version floor.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AuthorizationError, UserAuthenticationExpiredError } from "@nats-io/nats-core";
import { isNatsAuthError, MIN_NATS_SERVER, versionAtLeast } from "../../shared/bus/connect.ts";
import { invocation, pasteableHints } from "../../shared/cli/invocation.ts";

describe("pasteable command names", () => {
  it("npx <name> under npx or when the name is not on the PATH; the bare name when it is", () => {
    const dir = mkdtempSync(join(tmpdir(), "invocation-"));
    try {
      writeFileSync(join(dir, "londiste"), "#!/bin/sh\n");
      chmodSync(join(dir, "londiste"), 0o755);
      expect(invocation("londiste", { PATH: `/nonexistent:${dir}` })).toBe("londiste");
      expect(invocation("pgqadm", { PATH: `/nonexistent:${dir}` })).toBe("npx pgqadm");
      expect(invocation("londiste", { PATH: dir, npm_command: "exec" })).toBe("npx londiste");
      expect(invocation("londiste", { PATH: join(dir, "node_modules", ".bin") })).toBe("npx londiste");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("hints in messages become command lines the user can paste", () => {
  const env = { PATH: "/nonexistent" };
  it("`londiste CONFIG ...` / `pgqadm CONF ...` take the user's invocation and config path", () => {
    expect(pasteableHints('londiste is not installed: run "londiste CONFIG subscriber install" first', "conf/job.ini", env)).toBe(
      'londiste is not installed: run "npx londiste conf/job.ini subscriber install" first',
    );
    expect(pasteableHints("waiting (pgqadm CONF install)", "/etc/t.ini", env)).toBe("waiting (npx pgqadm /etc/t.ini install)");
    expect(pasteableHints("run londiste CONF subscriber resync public.t", "my job.ini", { ...env, npm_command: "exec" })).toBe(
      "run npx londiste 'my job.ini' subscriber resync public.t",
    );
    expect(pasteableHints("no hint here: londiste ran", "x.ini", env)).toBe("no hint here: londiste ran");
  });
});

describe("NATS server version floor", () => {
  it.each([
    ["2.9.10", true],
    ["2.9.0", true],
    ["2.10.4", true],
    ["3.0.0", true],
    ["2.8.4", false],
    ["2.2.0", false],
    ["2.10.0-beta.1", true],
  ])("%s → %s", (v, ok) => {
    expect(versionAtLeast(v, MIN_NATS_SERVER)).toBe(ok);
  });
});

describe("refused NATS credentials are told from an unreachable server", () => {
  it.each([
    ["Authorization Violation", AuthorizationError.parse("'Authorization Violation'"), true],
    ["user authentication expired", UserAuthenticationExpiredError.parse("user authentication expired"), true],
    ["connection refused", Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4222"), { code: "ECONNREFUSED" }), false],
    ["a plain error", new Error("timeout"), false],
  ])("%s → %s", (_label, error, refused) => {
    expect(isNatsAuthError(error)).toBe(refused);
  });
});
