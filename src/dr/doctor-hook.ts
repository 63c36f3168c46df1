/**
 * The doctor checks the drill runs on a restored copy, beyond the state verifiers. The restored
 * workspace's tool-version record is checked here (a mismatch is a warning, not a failure).
 * When `src/orchestrator/doctor.ts` (runDoctor) is in main, the drill calls it as well.
 */
import type { Check } from "./verify.js";
import { restoredVersionWarning } from "./restore.js";

export async function doctorChecks(sddRoot: string): Promise<Check[]> {
  const warning = await restoredVersionWarning(sddRoot);
  return [
    {
      name: "version",
      status: "ok",
      detail: warning ?? "restored by the same tool version that wrote the backup",
    },
  ];
}
