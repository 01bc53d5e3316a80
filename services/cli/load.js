// Where the launchers find the product's modules: in a checkout the
// TypeScript sources, loaded through tsx in this same process; in an
// installed package (no sources, compiled by `npm run build`) the JavaScript
// under dist/. Either way the service runs in the process the user started,
// so signals reach it directly.
import { existsSync } from "node:fs";

const root = new URL("../../", import.meta.url);
const fromSources = existsSync(new URL("shared/version.ts", root));
if (fromSources) {
  const { register } = await import("tsx/esm/api");
  register();
}

/** Imports a module by its path from the package root without extension, e.g. "services/replay/main". */
export function load(path) {
  return import(new URL(fromSources ? `${path}.ts` : `dist/${path}.js`, root).href);
}
