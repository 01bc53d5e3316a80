/**
 * The compose file of deploy/compose and the image of deploy/docker, which
 * cannot be built or started here: the compose file is valid against the
 * compose specification's schema; every service of the image runs a bin
 * and a service command of the package, with environment overrides that
 * name config keys, from config files of the repository that load with
 * the real loaders; health checks and published ports use the configured
 * metrics port.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import {
  composeSchema,
  configKeyOfEnv,
  jsonSchemaProblems,
  loadConfigText,
  packageBins,
  packageJson,
  parseServiceCommand,
  readRepo,
  repoPath,
  type ServiceCommand,
} from "./deploy-helpers.ts";

const COMPOSE = "deploy/compose/compose.yaml";
const composeDir = dirname(repoPath(COMPOSE));

interface ComposeService {
  image?: string;
  build?: { context: string; args?: Record<string, string> };
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
}

const compose = parse(readRepo(COMPOSE)) as { services: Record<string, ComposeService> };

/** The image's Dockerfile instructions, by name (the last of each wins, as in Docker). */
function dockerfile(): Map<string, string> {
  const instructions = new Map<string, string>();
  const text = readRepo("deploy/docker/Dockerfile").replace(/\\\n/g, " ");
  for (const line of text.split("\n")) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(line.trim());
    if (m) instructions.set(m[1]!, m[2]!.trim());
  }
  return instructions;
}

describe("deploy/docker/Dockerfile", () => {
  const docker = dockerfile();

  it("installs the packed tarball of this version on node:20-slim and runs as node", () => {
    expect(docker.get("FROM")).toBe("node:20-slim");
    expect(docker.get("ARG")).toBe(`VERSION=${packageJson().version}`);
    expect(docker.get("COPY")).toBe("skytools-ts-${VERSION}.tgz /tmp/");
    expect(docker.get("RUN")).toMatch(/npm install --global .*\/tmp\/skytools-ts-\$\{VERSION\}\.tgz/);
    expect(docker.get("USER")).toBe("node");
  });

  it("has a bin of the package as its entrypoint", () => {
    const entrypoint = JSON.parse(docker.get("ENTRYPOINT")!) as string[];
    expect(entrypoint).toHaveLength(1);
    expect(packageBins().has(entrypoint[0]!)).toBe(true);
  });
});

describe(COMPOSE, () => {
  it("is valid against the compose specification", () => {
    expect(jsonSchemaProblems(composeSchema(), compose)).toEqual([]);
  });

  it("a broken copy fails: a misspelt key, a wrong type", () => {
    const misspelt = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    misspelt.services.replay!.enviroment = misspelt.services.replay!.environment;
    expect(jsonSchemaProblems(composeSchema(), misspelt)).toContain(".services.replay.enviroment: unknown key");
    const wrongType = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    wrongType.services.copy!.volumes = "../config/londiste.ini:/etc/skytools/londiste.ini:ro";
    expect(jsonSchemaProblems(composeSchema(), wrongType)).toContain(".services.copy.volumes: is string, not array");
  });

  const image = `skytools-ts:${packageJson().version}`;
  const ours = Object.entries(compose.services).filter(([, s]) => s.image === image);
  const defaultEntrypoint = JSON.parse(dockerfile().get("ENTRYPOINT")!) as string[];
  const started = new Map<string, ServiceCommand>();

  describe.each(ours)("service %s", (name, service) => {
    const command = parseServiceCommand([...(service.entrypoint ?? defaultEntrypoint), ...(service.command ?? [])]);
    if (typeof command === "object") started.set(name, command);

    it("builds the image from deploy/docker with this version", () => {
      expect(service.build?.args?.VERSION).toBe(packageJson().version);
      expect(existsSync(join(resolve(composeDir, service.build!.context), "Dockerfile"))).toBe(true);
    });

    it("runs a service command of a package bin", () => {
      expect(command, String(command)).toBeTypeOf("object");
    });

    it("mounts a config file of the repository, which loads with the overrides given", () => {
      const config = (command as ServiceCommand).config;
      const mount = (service.volumes ?? []).map((v) => v.split(":")).find(([, target]) => target === config);
      expect(mount, `a mount of ${config}`).toBeDefined();
      const [source, , mode] = mount!;
      expect(mode).toBe("ro");
      const file = resolve(composeDir, source!);
      expect(existsSync(file), file).toBe(true);

      const env = service.environment ?? {};
      const tool = (command as ServiceCommand).tool;
      expect(Object.keys(env).filter((key) => configKeyOfEnv(tool, key) === undefined)).toEqual([]);
      const loaded = loadConfigText(tool, readRepo(file.slice(repoPath("").length)), env);
      expect(loaded.metricsHost).toBe("0.0.0.0");
      expect(loaded.logfile).toBeUndefined();
      expect(loaded.pidfile).toBeUndefined();

      expect(service.healthcheck?.test.join(" ")).toContain(`http://127.0.0.1:${loaded.metricsPort}/readyz`);
      for (const port of service.ports ?? []) expect(port.split(":").at(-1)).toBe(String(loaded.metricsPort));
    });
  });

  it("runs every service: ticker, replay, copy workers, a repair worker", () => {
    expect([...started.values()].map((s) => `${s.tool} ${s.command}`).sort()).toEqual([
      "londiste copy",
      "londiste repair-worker",
      "londiste replay",
      "pgqadm ticker",
    ]);
    expect(ours).toHaveLength(Object.keys(compose.services).length - 3);
  });

  it("and NATS with JetStream, a provider and a subscriber Postgres", () => {
    expect(compose.services.nats?.image).toMatch(/^nats:/);
    expect((compose.services.nats as { command?: string[] }).command).toContain("--jetstream");
    for (const db of ["provider", "subscriber"]) expect(compose.services[db]?.image).toMatch(/^postgres:/);
  });
});
