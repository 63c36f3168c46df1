/**
 * Doctor's version check for a restored workspace: `dr restore` leaves a restore record
 * (src/dr/restore.ts) naming the tool version that wrote the archive; another version is a
 * warning, not a failure: operators read doctor's output for compatibility warnings after a restore,
 * and a workspace written by another version is usually fine to run.
 */
import { readRestoreRecord } from "../dr/restore.js";
import { VERSION } from "../version.js";
import type { DoctorCheck } from "./doctor-check.js";

export async function versionCheck(sddRoot: string): Promise<DoctorCheck> {
  const rec = await readRestoreRecord(sddRoot);
  const base = { name: "version", ok: true, fix: "" };
  if (!rec) return { ...base, verdict: "pass", detail: `bernstein ${VERSION}; not a restored workspace` };
  const v = rec.tool?.version ?? null;
  if (v !== VERSION) {
    return {
      ...base,
      verdict: "warn",
      detail: `restored from an archive written by ${rec.tool?.name ?? "?"} ${v ?? "(version unknown)"}; this is bernstein ${VERSION}`,
      fix: "run the version that wrote the backup, or check the release notes for format changes",
    };
  }
  return {
    ...base,
    verdict: "pass",
    detail: `restored from an archive written by this version (${VERSION})`,
  };
}
