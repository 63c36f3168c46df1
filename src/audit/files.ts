/** The day files an audit folder consists of (`YYYY-MM-DD.jsonl`, in chain order). */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";

const DAY_FILE_RE = /^\d{4}-\d{2}-\d{2}\.jsonl$/;

/** Day files of an audit folder in chain order (by name). Missing folder → none. */
export async function listAuditFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [] as string[];
    throw err;
  });
  return names.filter((n) => DAY_FILE_RE.test(n)).sort();
}

/**
 * Whether the audit log has any entry (any day file with a byte in it, readable or not): then a
 * chain exists that only its own key continues.
 */
export async function auditLogHasEntries(dir: string): Promise<boolean> {
  for (const name of await listAuditFiles(dir)) {
    const st = await stat(path.join(dir, name)).catch(() => undefined);
    if (st && st.size > 0) return true;
  }
  return false;
}
