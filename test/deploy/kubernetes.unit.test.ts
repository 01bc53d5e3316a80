/**
 * The Kubernetes manifests of deploy/kubernetes: every object is valid
 * against the Kubernetes schemas (kubernetes-models) with no field the
 * schema does not know; each Deployment runs one service of the package
 * from the ConfigMap's config, with overrides that name config keys and
 * Secret keys that exist; probes, Prometheus annotations and the container
 * port agree with the metrics_port the config loads to; pods run locked
 * down; standbys, disruption budgets and the kustomization fit together.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import {
  configKeyOfEnv,
  loadConfigText,
  parseServiceCommand,
  readRepo,
  repoPath,
  type ServiceCommand,
  type Validatable,
  validateStrict,
} from "./deploy-helpers.ts";

const DIR = "deploy/kubernetes";

const MODELS: Record<string, new (data: never) => Validatable> = {
  "apps/v1 Deployment": Deployment,
  "policy/v1 PodDisruptionBudget": PodDisruptionBudget,
  "v1 ConfigMap": ConfigMap,
  "v1 Secret": Secret,
  "v1 Service": Service,
};

// Plain shapes of what the tests read; the schemas themselves are checked by validateStrict.
interface Meta {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: Array<{ name?: string; containerPort: number }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface PodSpec {
  containers: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  volumes?: Array<{ name: string; configMap?: { name: string } }>;
  enableServiceLinks?: boolean;
  automountServiceAccountToken?: boolean;
}
interface DeploymentObject {
  metadata: Meta;
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: Meta; spec: PodSpec } };
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [field: string]: unknown;
}

/** Validates one object by its kind, strictly; throws on anything wrong. */
function validateManifest(doc: Manifest): void {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!Model) throw new Error(`${doc.apiVersion} ${doc.kind}: no schema for this kind here`);
  validateStrict(new Model(doc as never));
}

const manifestFiles = readdirSync(repoPath(DIR))
  .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
  .sort();

function documentsOf(file: string): Manifest[] {
  return parseAllDocuments(readRepo(join(DIR, file))).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
    return doc.toJS() as Manifest;
  });
}

const manifests = manifestFiles.flatMap((file) => documentsOf(file).map((doc) => ({ file, doc })));
const ofKind = <T>(kind: string) => manifests.filter((m) => m.doc.kind === kind).map((m) => m.doc as unknown as T);
const deployments = ofKind<DeploymentObject>("Deployment");
const configMaps = ofKind<Manifest & { data: Record<string, string> }>("ConfigMap");
const secrets = ofKind<Manifest & { stringData?: Record<string, string> }>("Secret");
const budgets = ofKind<Manifest & { spec: { selector: { matchLabels: Record<string, string> }; minAvailable?: number } }>("PodDisruptionBudget");

describe("the manifests", () => {
  it.each(manifests.map((m) => [`${m.file}: ${m.doc.kind} ${m.doc.metadata?.name}`, m.doc] as const))("%s is valid", (_name, doc) => {
    expect(() => validateManifest(doc)).not.toThrow();
  });

  it("a broken copy fails: a misspelt field, a nested one, a wrong type, an unknown kind", () => {
    const deployment = documentsOf("replay.yaml").find((d) => d.kind === "Deployment")!;
    const broken = (change: (d: DeploymentObject & Record<string, unknown>) => void) => {
      const copy = structuredClone(deployment) as unknown as DeploymentObject & Record<string, unknown>;
      change(copy);
      return () => validateManifest(copy as unknown as Manifest);
    };
    expect(broken((d) => Object.assign(d.spec, { replica: 2 }))).toThrow(/unknown field.*\.spec\.replica\b/);
    expect(broken((d) => Object.assign(d.spec.template.spec.containers[0]!.livenessProbe!, { periodSecond: 3 }))).toThrow(/livenessProbe\.periodSecond/);
    expect(broken((d) => Object.assign(d, { metdata: {} }))).toThrow(/\.metdata/);
    expect(broken((d) => Object.assign(d.spec, { replicas: "two" }))).toThrow(/replicas/);
    expect(broken((d) => Object.assign(d, { kind: "Deploymnet" }))).toThrow(/no schema/);
    const configMap = documentsOf("configmap.yaml")[0]!;
    expect(() => validateManifest({ ...configMap, dat: configMap.data } as Manifest)).toThrow(/\.dat\b/);
  });

  it("kustomization.yaml lists every manifest but the placeholder Secret", () => {
    const kustomization = parseAllDocuments(readRepo(join(DIR, "kustomization.yaml")))[0]!.toJS() as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual(manifestFiles.filter((f) => f !== "secret.yaml"));
  });

  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
  // Where kubectl is not installed the manifests are still validated against the schemas above.
  if (kubectl) it("kubectl kustomize builds them (offline)", () => {
    const run = spawnSync("kubectl", ["kustomize", repoPath(DIR)], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const kinds = parseAllDocuments(run.stdout).map((d) => (d.toJS() as Manifest).kind);
    expect(kinds.filter((k) => k === "Deployment")).toHaveLength(4);
  });
});

/** The environment a container gets, with Secret references resolved from the Secrets here. */
function containerEnv(container: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    if (ref) {
      const value = secrets.find((s) => s.metadata.name === ref.name)?.stringData?.[ref.key];
      if (value === undefined) throw new Error(`${variable.name}: Secret ${ref.name} has no key ${ref.key}`);
      env[variable.name] = value;
    } else {
      env[variable.name] = variable.value ?? "";
    }
  }
  return env;
}

const started = new Map<string, ServiceCommand>();

describe.each(deployments.map((d) => [d.metadata.name, d] as const))("Deployment %s", (_name, deployment) => {
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0]!;
  const command = parseServiceCommand([...(container.command ?? []), ...(container.args ?? [])]);
  if (typeof command === "object") started.set(deployment.metadata.name, command);

  it("runs one service of the package with an explicit bin", () => {
    expect(pod.containers).toHaveLength(1);
    expect(container.command).toHaveLength(1);
    expect(command, String(command)).toBeTypeOf("object");
  });

  it("reads its config from the ConfigMap, with overrides of config keys only, and loads", () => {
    const service = command as ServiceCommand;
    const mount = container.volumeMounts?.find((m) => service.config.startsWith(`${m.mountPath}/`));
    expect(mount, `a volume mounted over ${service.config}`).toBeDefined();
    expect(mount!.readOnly).toBe(true);
    const volume = pod.volumes?.find((v) => v.name === mount!.name);
    const configMap = configMaps.find((c) => c.metadata.name === volume?.configMap?.name);
    expect(configMap, `ConfigMap ${volume?.configMap?.name}`).toBeDefined();
    const text = configMap!.data[service.config.slice(mount!.mountPath.length + 1)];
    expect(text, `key for ${service.config}`).toBeDefined();

    const env = containerEnv(container);
    expect(Object.keys(env).filter((name) => configKeyOfEnv(service.tool, name) === undefined)).toEqual([]);
    const config = loadConfigText(service.tool, text!, env);
    expect(config.metricsHost).toBe("0.0.0.0");

    const port = container.ports?.find((p) => p.name === "metrics");
    expect(port?.containerPort).toBe(config.metricsPort);
    const annotations = deployment.spec.template.metadata.annotations ?? {};
    expect(annotations).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": String(config.metricsPort), "prometheus.io/path": "/metrics" });
    expect(container.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(container.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "metrics" });
  });

  it("runs locked down: non-root, read-only root, no capabilities, no API token, no service links", () => {
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    expect(container.securityContext?.capabilities?.drop).toContain("ALL");
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
  });

  it("asks for resources and caps memory", () => {
    expect(container.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources?.limits?.memory).toBeDefined();
  });

  it("selects its own pods", () => {
    expect(deployment.spec.template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
  });
});

describe("the services together", () => {
  const byCommand = (c: string) => deployments.find((d) => {
    const s = started.get(d.metadata.name);
    return s !== undefined && `${s.tool} ${s.command}` === c;
  });

  it("run each service once: ticker and replay with a standby, the workers scalable", () => {
    const commands = [...started.values()].map((s) => `${s.tool} ${s.command}`).sort();
    expect(commands).toEqual(["londiste copy", "londiste repair-worker", "londiste replay", "pgqadm ticker"]);
    expect(byCommand("pgqadm ticker")?.spec.replicas).toBe(2);
    expect(byCommand("londiste replay")?.spec.replicas).toBe(2);
  });

  it("use one image", () => {
    expect(new Set(deployments.map((d) => d.spec.template.spec.containers[0]!.image)).size).toBe(1);
  });

  it("every disruption budget covers one Deployment; ticker and replay keep one pod", () => {
    const covered = budgets.map((b) => {
      const matching = deployments.filter((d) =>
        Object.entries(b.spec.selector.matchLabels).every(([k, v]) => d.spec.template.metadata.labels?.[k] === v),
      );
      expect(matching, b.metadata.name).toHaveLength(1);
      return { deployment: matching[0]!, budget: b };
    });
    for (const c of ["pgqadm ticker", "londiste replay"]) {
      expect(covered.find((x) => x.deployment === byCommand(c))?.budget.spec.minAvailable, c).toBe(1);
    }
  });
});
