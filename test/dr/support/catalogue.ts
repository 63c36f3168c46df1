/**
 * A backup recorded in the catalogue (`runs/backups.jsonl`) as `dr backup` records it; without
 * `split`, as a version before the `.age` header/payload hashes did.
 */
import { appendBackupLog } from "../../../src/dr/backup-log.js";
import type { backupToFile } from "../../../src/dr/backup.js";
import type { Workspace } from "../../../src/workspace/layout.js";

export async function catalogueBackup(
  ws: Workspace,
  b: Awaited<ReturnType<typeof backupToFile>>,
  recipients: string[],
  opts: { split?: boolean } = {},
): Promise<void> {
  await appendBackupLog(ws, {
    created_at: new Date().toISOString(),
    location: b.path,
    sha256: b.sha256,
    manifest_sha256: b.manifest_sha256,
    file_count: b.file_count,
    size_bytes: b.size_bytes,
    encrypted: true,
    verified: false,
    recipients,
    ...(opts.split ? b.age : {}),
  });
}
