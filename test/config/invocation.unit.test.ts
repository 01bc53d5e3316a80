// Hints name a command the way the user can paste it (shared/cli/invocation.ts), and the NATS version floor.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MIN_NATS_SERVER, versionAtLeast } from "../../shared/bus/connect.ts";
import { invocation } from "../../shared/cli/invocation.ts";

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
