/**
 * `runs/backups.jsonl`: one row per successful backup, appended durably by `dr backup` (and by
 * any other writer of backups: S3 uploads, replication base snapshots). Read by `dr list`,
 * `dr status` and the replication status.
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import path from "node:path";
import { durableAppend, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import type { WalPosition } from "./manifest.js";

export interface BackupLogRow {
  created_at: string;
  location: string;
  /**
   * The whole archive's sha256; null on the row of a header-only `dr rekey` of an `.age` archive
   * (the age_* fields below state its bytes: the payload was not read again).
   */
  sha256: string | null;
  manifest_sha256: string;
  file_count: number;
  size_bytes: number;
  encrypted: boolean;
  verified: boolean;
  /**
   * The archive's WAL position per run (the manifest's `state.wal`): the WAL had durably reached
   * it, so a WAL that later ends before it was rolled back (src/dr/rollback.ts). Absent in rows
   * of older versions and of the Python original.
   */
  wal_positions?: Record<string, WalPosition | null>;
  /** An `.age` archive's recipients (public keys), so a rekey can remove one; absent otherwise. */
  recipients?: string[];
  /** Their fingerprints (`SHA256:` + 16 hex digits of the recipient's sha256), for `dr list`. */
  recipient_fingerprints?: string[];
  /** Set on the row a `dr rekey` appends: the sha256 the archive had before (null: unknown). */
  rekeyed_from?: string | null;
  /** `.age` archives: bytes in the header, and the sha256 of the header and of the rest. */
  age_header_bytes?: number;
  age_header_sha256?: string;
  age_payload_sha256?: string;
}

export const backupLogPath = (ws: Workspace): string => path.join(ws.runsDir, "backups.jsonl");

export async function appendBackupLog(ws: Workspace, row: BackupLogRow): Promise<void> {
  const file = backupLogPath(ws);
  await durableMkdir(path.dirname(file));
  await durableAppend(file, JSON.stringify(row) + "\n");
}

/** Streams the rows (a torn or unparsable line is skipped, not fatal). */
export async function* readBackupLog(ws: Workspace): AsyncGenerator<BackupLogRow> {
  let input;
  try {
    input = createReadStream(backupLogPath(ws), { encoding: "utf8" });
    await new Promise<void>((resolve, reject) => {
      input!.once("open", () => resolve());
      input!.once("error", reject);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    try {
      yield JSON.parse(line) as BackupLogRow;
    } catch {
      // a torn last line of a crashed append; the rows before it stand
    }
  }
}

/** The newest row (by created_at), optionally only verified ones. */
export async function lastGoodBackup(
  ws: Workspace,
  opts: { verifiedOnly?: boolean } = {},
): Promise<BackupLogRow | undefined> {
  let best: BackupLogRow | undefined;
  for await (const row of readBackupLog(ws)) {
    if (opts.verifiedOnly && !row.verified) continue;
    if (!best || row.created_at >= best.created_at) best = row;
  }
  return best;
}
