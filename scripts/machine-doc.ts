// Writes docs/table-sync-machine.md from the machine definition.
import { writeFileSync } from "node:fs";
import { machineMarkdown } from "../shared/londiste/sync-machine-doc.ts";

writeFileSync(new URL("../docs/table-sync-machine.md", import.meta.url), machineMarkdown());
process.stdout.write("wrote docs/table-sync-machine.md\n");
