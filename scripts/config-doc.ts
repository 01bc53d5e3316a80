// Writes docs/configuration.md from the config schemas.
import { writeFileSync } from "node:fs";
import { configMarkdown } from "../shared/config/config-doc.ts";

writeFileSync(new URL("../docs/configuration.md", import.meta.url), configMarkdown());
process.stdout.write("wrote docs/configuration.md\n");
