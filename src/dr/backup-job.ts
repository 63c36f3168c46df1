/**
 * One backup, the whole use case: produce the archive (backup.ts), store it (a file, or off-site
 * through storage/offsite.ts), read it back, record it in `runs/backups.jsonl` and the audit
 * chain. `dr backup`, `dr schedule` and the drill all take their backups through here, so a
 * backup of record means the same everywhere.
 */
import { ExitCode, UserError } from "../errors/errors.js";
import type { Workspace } from "../workspace/layout.js";
import { recordAuditEvent } from "./audit-event.js";
import { appendBackupLog } from "./backup-log.js";
import { backupToFile, encryptionOf, type BackupFileResult, type BackupOptions } from "./backup.js";
import { DR_BACKUP_EVENT } from "../storage/audit-record.js";
import {
  backupOffsite,
  isOffsiteDestination,
  type OffsiteBackupResult,
  type ProducedBackup,
} from "../storage/offsite.js";
import { describeLeftover } from "../storage/local-copy.js";
import type { S3Options } from "../storage/s3-store.js";
import type { RetryInfo } from "../storage/store.js";

export interface BackupJob {
  /** A file, or `s3://bucket/key`: one backup under that name. */
  to?: string;
  /** A catalogue location (folder or `s3://bucket/prefix/`): a dated name plus a verified record. */
  toDir?: string;
  /** Encrypts when given. */
  password?: string;
  /** Encrypts to these age recipients instead (`NAME.tar.gz.age`); they win over a password. */
  recipients?: readonly string[];
  /** Identities that open a backup to recipients, for `verify` (the writing host may have none). */
  identities?: readonly string[];
  /** The workspace's audit key: the backup checks the audit chain with it; an encrypted one carries it. */
  auditKeyPath?: string;
  /** Replace a backup that exists under the same name. */
  force?: boolean;
  /** A file destination: read the written archive back before success (off-site ones always are). */
  verify?: boolean;
  /** Record the backup (runs/backups.jsonl, audit chain); off for a drill's scratch backup. */
  record?: boolean;
  s3?: S3Options;
  localCopyDir?: string;
  keepLocal?: boolean;
  fullReadBack?: boolean;
  now?: Date;
  onRetry?: (info: RetryInfo) => void;
  /**
   * Called before the backup is produced, once its destination is known to take it (an s3://
   * one listed): the CLI says the backup started only then, so a refused one prints its error alone.
   */
  onDestinationChecked?: () => void;
  /** Progress per phase ("archiving", "uploading", "reading back"...): done of total bytes. */
  onProgress?: (phase: string, done: number, total: number) => void;
  /** The repository's HEAD for the manifest (the CLI asks git; dr does not know about repositories). */
  repositoryHead?: BackupOptions["repositoryHead"];
}

export interface BackupJobResult {
  archive: BackupFileResult;
  /** Where the backup is: a file path or `s3://bucket/key`. */
  location: string;
  verified: boolean;
  offsite?: OffsiteBackupResult;
  /** The archive's warnings, and the audit chain's when the event could not be appended. */
  warnings: string[];
}

/** The facts storage needs of an archive `backupToFile` wrote. */
export function producedFrom(r: BackupFileResult): ProducedBackup {
  return {
    path: r.path,
    sha256: r.sha256,
    manifest_sha256: r.manifest_sha256,
    file_count: r.file_count,
    size_bytes: r.size_bytes,
    encrypted: r.encrypted,
    wal_positions: r.manifest.state.wal,
    ...(r.age ? { age: r.age } : {}),
  };
}

export async function runBackupJob(ws: Workspace, job: BackupJob): Promise<BackupJobResult> {
  const encrypted = encryptionOf(job) !== undefined;
  const backupOpts: BackupOptions = {
    password: job.password,
    recipients: job.recipients,
    auditKeyPath: job.auditKeyPath,
    onProgress: job.onProgress,
    repositoryHead: job.repositoryHead,
  };
  let result: BackupJobResult;
  if (isOffsiteDestination(job)) {
    let archive!: BackupFileResult;
    const offsite = await backupOffsite({
      to: job.to,
      toDir: job.toDir,
      encrypted,
      age: encryptionOf(job) === "age",
      force: job.force,
      produce: async (target, { overwrite, nextTarget }) => {
        archive = await backupToFile(ws, target, {
          ...backupOpts,
          sidecar: false,
          overwrite,
          nextDest: nextTarget,
        });
        return producedFrom(archive);
      },
      s3: job.s3,
      localCopyDir: job.localCopyDir,
      keepLocal: job.keepLocal,
      fullReadBack: job.fullReadBack,
      onRetry: job.onRetry,
      onDestinationChecked: job.onDestinationChecked,
      onUploadProgress: (done, total) => job.onProgress?.("uploading", done, total),
      now: job.now,
    });
    result = {
      archive,
      location: offsite.location,
      verified: offsite.record !== null,
      offsite,
      warnings: offsite.removed_local_copies.map((c) => describeLeftover(c, "removed")),
    };
  } else {
    job.onDestinationChecked?.();
    const archive = await backupToFile(ws, job.to!, { ...backupOpts, overwrite: job.force });
    const verified = job.verify ? await readBack(archive, job) : false;
    result = { archive, location: archive.path, verified, warnings: [] };
  }
  result.warnings.push(...result.archive.warnings);
  if (job.record ?? true) {
    const auditWarning = await recordBackup(ws, result, job.recipients);
    if (auditWarning) result.warnings.push(auditWarning);
  }
  return result;
}

/** Reads every byte of a written archive back: it must hash and count as written. */
async function readBack(archive: BackupFileResult, job: BackupJob): Promise<true> {
  // The reading side loads only for --verify: a backup alone need not pay its start-up.
  const { inspectArchive, openArchiveFile } = await import("./restore.js");
  const summary = await inspectArchive(await openArchiveFile(archive.path), {
    password: job.password,
    identities: job.identities,
    label: archive.path,
    onProgress: (n) => job.onProgress?.("reading back", n, archive.size_bytes),
  });
  if (summary.sha256 !== archive.sha256 || summary.file_count !== archive.file_count) {
    throw new UserError(`backup ${archive.path} did not read back identically`, ExitCode.CORRUPT);
  }
  return true;
}

/**
 * What every backup leaves in its workspace: a row in runs/backups.jsonl (dr status, RPO) and one
 * `dr.backup` audit event (dr list --check; off-site backups add their catalogue root and name).
 * Returns the warning when the event could not be appended.
 */
async function recordBackup(
  ws: Workspace,
  r: BackupJobResult,
  recipients: readonly string[] | undefined,
): Promise<string | undefined> {
  const b = producedFrom(r.archive);
  // An `.age` backup's recipients, with their fingerprints (for rekey and `dr list`).
  let keys = {};
  if (recipients?.length) {
    const { recipientFingerprint } = await import("./age/keys.js");
    keys = { recipients: [...recipients], recipient_fingerprints: recipients.map(recipientFingerprint) };
  }
  await appendBackupLog(ws, {
    created_at: new Date(r.archive.manifest.created_at * 1000).toISOString(),
    location: r.location,
    sha256: b.sha256,
    manifest_sha256: b.manifest_sha256 ?? "",
    file_count: b.file_count ?? 0,
    size_bytes: b.size_bytes,
    encrypted: b.encrypted,
    verified: r.verified,
    ...(b.wal_positions ? { wal_positions: b.wal_positions } : {}),
    ...keys,
    ...b.age,
  });
  const offsite = r.offsite && { root: r.offsite.root, name: r.offsite.name, remote: r.offsite.remote };
  const audit = await recordAuditEvent(ws, {
    event_type: DR_BACKUP_EVENT,
    resource_type: "backup",
    resource_id: r.location,
    details: {
      sha256: b.sha256,
      manifest_sha256: b.manifest_sha256,
      file_count: b.file_count,
      size_bytes: b.size_bytes,
      encrypted: b.encrypted,
      ...b.age,
      ...(offsite ?? {}),
    },
  });
  return audit.warning;
}
