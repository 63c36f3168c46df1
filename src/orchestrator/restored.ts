/**
 * Doctor's version check for a restored workspace: `dr restore` leaves a restore record naming the
 * tool version that wrote the archive; another version is a warning (the seed: "tail your bernstein
 * doctor output for compatibility warnings").
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { VERSION } from "../version.js";
import type { DoctorCheck } from "./doctor.js";

export async function versionCheck(sddRoot: string): Promise<DoctorCheck> {
  let rec: { tool?: { name?: string; version?: string | null } } | undefined;
  try {
    rec = JSON.parse(await readFile(path.join(sddRoot, "runtime", "restored-from.json"), "utf8"));
  } catch {
    rec = undefined;
  }
  if (!rec)
    return {
      name: "version",
      ok: true,
      verdict: "pass",
      detail: `bernstein ${VERSION}; not a restored workspace`,
      fix: "",
    };
  const v = rec.tool?.version ?? null;
  if (v !== VERSION) {
    return {
      name: "version",
      ok: true,
      verdict: "warn",
      detail: `restored from an archive written by ${rec.tool?.name ?? "?"} ${v ?? "(version unknown)"}; this is bernstein ${VERSION}`,
      fix: "run the same version as the backup, or check the release notes for format changes",
    };
  }
  return {
    name: "version",
    ok: true,
    verdict: "pass",
    detail: `restored by the same version (${VERSION}) that wrote the backup`,
    fix: "",
  };
}
