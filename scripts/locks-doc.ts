// Writes docs/advisory-locks.md from the lock registry.
import { writeFileSync } from "node:fs";
import { renderAdvisoryLockDoc } from "../shared/db/advisory-locks.ts";

writeFileSync(new URL("../docs/advisory-locks.md", import.meta.url), renderAdvisoryLockDoc());
process.stdout.write("wrote docs/advisory-locks.md\n");
