/**
 * Starts the repair worker without the londiste launcher:
 *   node --import tsx services/repair/run.ts CONFIG
 * (what `londiste CONFIG repair-worker` does once the launcher knows it).
 */
import { runRepairService } from "./main.ts";

const configPath = process.argv[2];
if (!configPath || process.argv.length > 3) {
  process.stderr.write("usage: node --import tsx services/repair/run.ts CONFIG\n");
  process.exit(2);
}
process.exit(await runRepairService(configPath));
