/**
 * `bernstein dr backup | restore | verify | drill | rekey`: the archive side of the disaster-recovery
 * group; one module per subcommand in dr/. Human output follows the Python original's transcript;
 * every command has --json.
 */
import type { Command } from "../../vendor/commander.js";
import { registerBackup } from "./dr/backup.js";
import { registerDrill } from "./dr/drill.js";
import { drGroup } from "./dr/options.js";
import { registerRekey } from "./dr/rekey.js";
import { registerRestore } from "./dr/restore.js";
import { registerVerify } from "./dr/verify.js";

export function registerDr(program: Command): void {
  const dr = drGroup(program);
  registerBackup(dr);
  registerRestore(dr);
  registerVerify(dr);
  registerDrill(dr);
  registerRekey(dr);
}
