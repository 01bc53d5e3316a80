/**
 * The pure parts of the NATS roles and the repair worker's limits, without
 * servers: a permissions violation becomes "not permitted on SUBJECT as
 * USER" (never a secret), fix-file names are shell-safe and distinct, and
 * the repair_dir check; plus the shape of the sample NATS configs (TLS and
 * authorization on, no 0.0.0.0, passwords only from the environment).
 */
import { readdirSync } from "node:fs";
import { PermissionViolationError, RequestError } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import { natsUserLabel, notPermittedMessage, permissionViolation } from "../../shared/bus/permissions.ts";
import { fixFileName, isInside } from "../../services/repair/files.ts";
import { readRepo } from "../deploy/deploy-helpers.ts";

describe("NATS permission refusals", () => {
  const publish = PermissionViolationError.parse('Permissions Violation for Publish to "skytools.londiste.j.subscriber.remove"')!;
  const inbox = PermissionViolationError.parse('Permissions Violation for Subscription to "_INBOX.abc.*"')!;

  it("are found in an error or its causes, and only there", () => {
    expect(permissionViolation(publish)).toBe(publish);
    expect(permissionViolation(new RequestError("request failed", { cause: publish }))).toBe(publish);
    expect(permissionViolation(new RequestError("timeout"))).toBeUndefined();
    expect(permissionViolation("a string")).toBeUndefined();
  });

  it("say the subject and the user; a refused reply inbox says which key to set", () => {
    expect(notPermittedMessage(publish, "observer")).toBe("not permitted on skytools.londiste.j.subscriber.remove as observer");
    expect(notPermittedMessage(inbox, "observer")).toBe(
      "not permitted on _INBOX.abc.* as observer (subscribing); replies come on _INBOX.>: set nats_inbox_prefix to a prefix this user may subscribe to",
    );
  });

  it("name the user, never a password or token", () => {
    expect(natsUserLabel({ user: "operator" })).toBe("operator");
    expect(natsUserLabel({ token: "s3cret-token" })).toBe("the token's user");
    expect(natsUserLabel({ credsFile: "/etc/skytools/ops.creds" })).toBe("the user of /etc/skytools/ops.creds");
    expect(natsUserLabel({})).toBe("an anonymous user");
  });
});

describe("fix-file names", () => {
  it("keep a plain name as it is", () => {
    expect(fixFileName("public.orders")).toBe("fix.public.orders.sql");
    expect(fixFileName("sales_2026.line-items")).toBe("fix.sales_2026.line-items.sql");
  });

  it("carry no quote, semicolon, space, slash or other shell character, and stay distinct", () => {
    const hostile = [`public."a b;c'd"`, `public."a_b_c_d"`, `public."x$(rm -rf ~)"`, `"../..".t`, `public."tab\tnew\nline"`, `public."a|b&c>d<e*f?g"`];
    const names = hostile.map(fixFileName);
    for (const n of names) expect(n).toMatch(/^fix\.[\p{L}\p{N}_.-]+\.sql$/u);
    expect(new Set(names).size).toBe(hostile.length);
    expect(fixFileName(`public."a b;c'd"`)).toMatch(/^fix\.public\.a_b_c_d-[0-9a-f]{6}\.sql$/);
    // Letters of any script are safe on a shell line and stay readable.
    expect(fixFileName("public.straße")).toBe("fix.public.straße.sql");
  });

  it("stay within file name limits for the longest identifiers", () => {
    const long = `"${"x".repeat(63)}"."${"y".repeat(63)}"`;
    expect(Buffer.byteLength(fixFileName(long))).toBeLessThan(255);
    expect(fixFileName(`${"a".repeat(60)}.${"b".repeat(63)}`)).toMatch(/-[0-9a-f]{6}\.sql$/);
  });
});

describe("repair_dir", () => {
  it("admits the directory itself and what is below it, nothing else", () => {
    expect(isInside("/var/lib/skytools/r", "/var/lib/skytools/r")).toBe(true);
    expect(isInside("/var/lib/skytools/r", "/var/lib/skytools/r/sub/deeper")).toBe(true);
    expect(isInside("/var/lib/skytools/r", "/var/lib/skytools/rx")).toBe(false);
    expect(isInside("/var/lib/skytools/r", "/var/lib/skytools")).toBe(false);
    expect(isInside("/var/lib/skytools/r", "/etc")).toBe(false);
    expect(isInside("/var/lib/skytools/r", "/var/lib/skytools/r/..")).toBe(false);
  });
});

describe("sample NATS server configs (deploy/nats)", () => {
  const servers = readdirSync(new URL("../../deploy/nats/", import.meta.url)).filter((f) => f.endsWith(".conf") && f !== "authorization.conf");

  it.each(servers)("%s: TLS and authorization on, every address deliberate", (file) => {
    const text = readRepo(`deploy/nats/${file}`);
    const settings = text.split("\n").filter((l) => !l.trim().startsWith("#"));
    expect(settings.join("\n")).not.toMatch(/0\.0\.0\.0/);
    expect(settings.join("\n")).toMatch(/^tls \{\n {2}cert_file: .+\n {2}key_file: .+/m);
    expect(settings).toContain("include ./authorization.conf");
    for (const line of settings.filter((l) => /^\s*(listen|http):/.test(l))) expect(line).toMatch(/:\s*\S+:\d+$/);
  });

  it("authorization.conf: three users, passwords only from the environment", () => {
    const text = readRepo("deploy/nats/authorization.conf");
    const users = [...text.matchAll(/\{ user: (\w+), password: (\S+), permissions: \$(\w+) \}/g)].map((m) => [m[1], m[2], m[3]]);
    expect(users).toEqual([
      ["service", "$SKYTOOLS_SERVICE_PASSWORD", "SKYTOOLS_SERVICE"],
      ["operator", "$SKYTOOLS_OPERATOR_PASSWORD", "SKYTOOLS_OPERATOR"],
      ["observer", "$SKYTOOLS_OBSERVER_PASSWORD", "SKYTOOLS_OBSERVER"],
    ]);
    // Each role receives replies on its own inbox prefix only.
    for (const user of ["service", "operator", "observer"]) expect(text).toContain(`"_INBOX.${user}.>"`);
    expect(text).not.toMatch(/"_INBOX\.>"/);
  });
});
