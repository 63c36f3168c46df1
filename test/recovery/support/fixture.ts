/** The Python reference workspace for recovery tests, unpacked from the fixture backup. */
import { chmod, copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import * as tar from "tar";
import { PYTHON_REFERENCE as REFERENCE } from "../../helpers.js";

export { REFERENCE };

/** Unpacks the reference `.sdd/` (from backup-plain.tar.gz) into `dir/.sdd` and returns its path. */
export async function unpackReferenceSdd(dir: string): Promise<string> {
  const sdd = path.join(dir, ".sdd");
  await mkdir(sdd, { recursive: true });
  await tar.x({ file: path.join(REFERENCE, "backup-plain.tar.gz"), cwd: sdd });
  return sdd;
}

/** Copies the reference audit key to `dir/audit.key` with mode 0600 (git does not keep modes). */
export async function referenceKeyFile(dir: string): Promise<string> {
  const file = path.join(dir, "audit.key");
  await copyFile(path.join(REFERENCE, "audit.key"), file);
  await chmod(file, 0o600);
  return file;
}
