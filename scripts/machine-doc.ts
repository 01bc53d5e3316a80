// Writes docs/table-sync-machine.md and sql/londiste/functions/londiste.sync_machine.sql from the machine definition.
import { writeFileSync } from "node:fs";
import { machineMarkdown } from "../shared/londiste/sync-machine-doc.ts";
import { machineSql } from "../shared/londiste/sync-machine-sql.ts";

writeFileSync(new URL("../docs/table-sync-machine.md", import.meta.url), machineMarkdown());
process.stdout.write("wrote docs/table-sync-machine.md\n");
writeFileSync(new URL("../sql/londiste/functions/londiste.sync_machine.sql", import.meta.url), machineSql());
process.stdout.write("wrote sql/londiste/functions/londiste.sync_machine.sql\n");
