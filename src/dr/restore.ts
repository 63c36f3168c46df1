/**
 * `dr restore`: extract into a staging folder beside the target, check every file against the
 * manifest (and the Fernet HMAC), fsync every file and folder, then swap with renames. The old
 * target is kept as `<target>.pre-restore-<UTC ts>` (or removed with --no-keep).
 *
 */
import { constants, mkdirSync } from "node:fs";
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { ExitCode, UserError, destinationError, userErrorFromFs } from "../errors/errors.js";
import { auditKeyBytes, isAuditKeyText } from "../audit/key.js";
import { auditLogSignedBy } from "../audit/log.js";
import { atomicWriteFile, durableMkdir } from "../workspace/durable.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import { shown } from "../workspace/shown-path.js";
import { WORKSPACE_DIRS, Workspace } from "../workspace/layout.js";
import { appendBackupLog, type BackupLogRow } from "./backup-log.js";
import { resolveOptions } from "../json/object.js";
import { withKeysAhead } from "./keys-ahead.js";
import { StagingWriter } from "./staging-writer.js";
import { readArchive, type ArchiveSummary, type ReadArchiveOptions } from "./unpack.js";
import { TOOL_NAME, VERSION } from "../version.js";
import { buildAndSwapIn, type StagingBuild, type StopLiveHolder } from "./restore-target.js";
import { stateNotInArchive } from "./manifest.js";
import { makeScratchDir, removeDeadScratchDirs } from "./scratch-dir.js";
import { auditKeyAt, checkState, recordedDamage, stateWarnings, walChainBreaks } from "./state-checks.js";
import type { ExtractHandler } from "./tar-reader.js";

export { completeInterruptedRestore, restoreLockPath } from "./restore-target.js";

/** Where a restored workspace records what it was restored from (read by `doctor`). */
export const RESTORE_RECORD = ["runtime", "restored-from.json"] as const;

export interface RestoreRecord {
  restored_at: string;
  source: string;
  archive_sha256: string;
  manifest_sha256: string;
  format: "bernstein" | "reference";
  /** The tool that wrote the archive (the Python reference records none). */
  tool: { name: string; version: string | null };
  restored_by: { name: string; version: string };
  file_count: number;
}

export interface RestoreOptions extends ReadArchiveOptions {
  /** Stops a live holder of the target's lock instead of refusing (`--force`). */
  stopLiveHolder?: StopLiveHolder;
  /** The caller holds the target's workspace lock itself (a follower restoring its own workspace). */
  lockHeldByCaller?: boolean;
  /** Keep the previous target as `<target>.pre-restore-<ts>` (default true). */
  keep?: boolean;
  /** The resolved audit key path where an archive's key is installed. */
  auditKeyPath?: string;
  /** Where the archive came from, for the restore record. */
  source?: string;
  /**
   * Where the archive is as a backup the user can restore again (an absolute path or
   * `s3://bucket/key`): the restored workspace's `runs/backups.jsonl` gets its row. The archive
   * holds that record as it was before the backup's own row was appended, so without this the
   * restored workspace's last good backup (`dr status`, the runbook) would be an older one.
   */
  backupLocation?: string;
  /** See GuardedRestore.onStart. */
  onStart?: () => void;
}

export interface AuditKeyOutcome {
  /** set-aside: none existed, but the key did not sign the restored audit log (saved_copy). */
  action: "installed" | "unchanged" | "kept-existing" | "set-aside" | "none";
  path?: string;
  /** When the archive's key was not installed: where it was saved for --key-file. */
  saved_copy?: string;
  message?: string;
}

export interface RestoreResult {
  target: string;
  file_count: number;
  sha256: string;
  size_bytes: number;
  format: ArchiveSummary["format"];
  encrypted: boolean;
  kept?: string;
  audit_key: AuditKeyOutcome;
  tool_version: string | null;
  warnings: string[];
}

/** An archive file opened for reading, with its size when opened. */
export type ArchiveFile = Readable & { readonly fileBytes: number };

export async function openArchiveFile(from: string): Promise<ArchiveFile> {
  // Opened here, not by the stream: a stream's own open fails with an 'error' event while nobody
  // listens yet (the restore reads only after taking its lock), which would end the process.
  // The handle is what gets checked, so nothing can swap the path between check and read.
  // Non-blocking, so that a FIFO without a writer is refused instead of hanging in open(2)
  // (reads of a regular file ignore the flag).
  let fh;
  try {
    fh = await open(from, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      // `dr backup --to X --encrypt` writes X.enc (X.age to recipients): the name the user gave
      // the backup is not the file's.
      let hint = "";
      for (const ext of [".enc", ".age"]) {
        if (
          await stat(`${from}${ext}`).then(
            (st) => st.isFile(),
            () => false,
          )
        )
          hint = `; did you mean ${from}${ext}?`;
      }
      throw new UserError(`--from ${from}: no such file${hint}`, ExitCode.USAGE);
    }
    throw userErrorFromFs(err, `--from ${from}`) ?? err;
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new UserError(`--from ${from}: not a regular file`, ExitCode.USAGE);
  }
  return Object.assign(fh.createReadStream({ highWaterMark: 64 * 1024 }), { fileBytes: st.size });
}

/** Reads and checks a whole archive without writing anything (dry-run, verify). */
export async function inspectArchive(
  source: AsyncIterable<Buffer | string>,
  opts: ReadArchiveOptions = {},
): Promise<ArchiveSummary> {
  return readArchive(source, {}, await withKeysAhead(source, opts));
}

/**
 * Installs the archive's audit key where none is, but only a key that signed the restored log:
 * the key path serves every workspace of the user, so a key the archive's author chose (an age
 * archive is made with the recipient's public key alone) would sign their later audit logs.
 * A log without entries proves no key, so its key is set aside too; the first audit event
 * makes one. A key not installed is saved beside the target for `audit verify --key-file`.
 */
async function installAuditKey(
  key: Buffer | undefined,
  keyPath: string | undefined,
  target: string,
  encrypted: boolean,
): Promise<AuditKeyOutcome> {
  if (!key)
    return {
      action: "none",
      message: encrypted
        ? "this backup carries no audit key (its workspace had none when it was taken)"
        : "this backup carries no audit key (plain backups leave it out)",
    };
  if (!keyPath)
    return { action: "none", message: "no audit key path resolved; the backup's key was not installed" };
  const existing = await readFile(keyPath).catch(() => undefined);
  if (existing && existing.toString("utf8").trim() === key.toString("utf8").trim())
    return { action: "unchanged", path: keyPath };
  const why = existing
    ? `a different audit key exists at ${keyPath} and was kept`
    : await keyNotShownToSign(key, path.join(target, "audit"), keyPath);
  if (!why) {
    await durableMkdir(path.dirname(keyPath), 0o700);
    await atomicWriteFile(keyPath, key, { mode: 0o600 });
    return { action: "installed", path: keyPath };
  }
  const saved = `${target}.audit-key-from-backup`;
  await atomicWriteFile(saved, key, { mode: 0o600 });
  return {
    action: existing ? "kept-existing" : "set-aside",
    path: keyPath,
    saved_copy: saved,
    message: `${why}; the backup's key is saved at ${saved}: verify the restored chain with \`bernstein audit verify --sdd ${target} --key-file ${saved}\``,
  };
}

/** Why the archive's key is not installed at `keyPath` (none exists there), if it is not. */
async function keyNotShownToSign(
  key: Buffer,
  auditDir: string,
  keyPath: string,
): Promise<string | undefined> {
  const notInstalled = `the backup's audit key was not installed at ${keyPath}`;
  if (!isAuditKeyText(key)) return `${notInstalled}: it is not 64 hex characters`;
  const signed = await auditLogSignedBy(auditDir, auditKeyBytes(key));
  if (signed === "no-entries")
    return `${notInstalled}: the restored audit log has no entries, so nothing shows it is the workspace's key (the first audit event makes a key)`;
  if (signed === "not-signed")
    return `${notInstalled}: none of the restored audit log's newest entries verifies with it`;
  return undefined;
}

/**
 * Restores an archive from any byte source into `target` (a `.sdd` folder). See the top of the file.
 */
export async function restoreFromStream(
  source: AsyncIterable<Buffer | string>,
  target: string,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  try {
    // A missing or wrong key is refused here, before the restore takes a lock or makes a folder.
    return await restoreInto(source, target, await withKeysAhead(source, opts));
  } catch (err) {
    // A restore refused before it read (a live lock, say) releases the file or connection now.
    if (source instanceof Readable) source.destroy();
    throw err;
  }
}

function restoreRecordOf(summary: ArchiveSummary, source: string | undefined): RestoreRecord {
  const manifestTool =
    (summary.manifest_raw.tool as { name?: string; version?: string } | undefined) ?? undefined;
  return {
    restored_at: new Date().toISOString(),
    source: source ?? "stream",
    archive_sha256: summary.sha256,
    manifest_sha256: summary.manifest_sha256,
    format: summary.format,
    tool: manifestTool?.name
      ? { name: manifestTool.name, version: manifestTool.version ?? null }
      : { name: "bernstein (python reference)", version: null },
    restored_by: { name: TOOL_NAME, version: VERSION },
    file_count: summary.file_count,
  };
}

/**
 * The row of the backup a workspace is restored from: read and hash-checked in full by this
 * restore, so verified; its WAL position is the restored WAL's. None for an archive whose
 * manifest gives no time of its own (a row is ordered by it).
 */
function restoredBackupRow(summary: ArchiveSummary, location: string): BackupLogRow | undefined {
  const created = summary.manifest_raw.created_at;
  if (typeof created !== "number" || !Number.isFinite(created)) return undefined;
  return {
    created_at: new Date(created * 1000).toISOString(),
    location,
    sha256: summary.sha256,
    manifest_sha256: summary.manifest_sha256,
    file_count: summary.file_count,
    size_bytes: summary.size_bytes,
    encrypted: summary.encrypted,
    verified: true,
    ...(summary.parsed.kind === "ours" ? { wal_positions: summary.parsed.manifest.state.wal } : {}),
  };
}

/** The result of a completed restore, after installing the audit key it carried. */
async function resultOf(
  summary: ArchiveSummary,
  abs: string,
  kept: string | undefined,
  opts: RestoreOptions,
  warnings: string[],
  damage: readonly string[],
): Promise<RestoreResult> {
  // Whether the backup was taken encrypted (it then carries the key) is its manifest's word: a
  // plain backup encrypted afterwards (`age -r`) left the key out on purpose.
  const takenEncrypted =
    typeof summary.manifest_raw.encrypted === "boolean" ? summary.manifest_raw.encrypted : summary.encrypted;
  const auditKey = await installAuditKey(summary.audit_key, opts.auditKeyPath, abs, takenEncrypted).catch(
    (err: Error) => ({
      action: "none" as const,
      message: `could not install the backup's audit key: ${err.message}`,
    }),
  );
  if (auditKey.message && auditKey.action !== "none") warnings.push(auditKey.message);
  const toolVersion = (summary.manifest_raw.tool as { version?: string } | undefined)?.version ?? null;
  if (toolVersion && toolVersion !== VERSION) {
    warnings.push(`the backup was written by ${TOOL_NAME} ${toolVersion}; this is ${VERSION}`);
  }
  // Damage the backup found and copied as it was, or this restore found: the restored workspace
  // holds it too.
  warnings.push(...damage);
  // State the manifest names but the archive lacks (`dr verify` fails it): restored as it is,
  // like a broken WAL above, since the files it holds match their manifest.
  if (summary.parsed.kind === "ours") {
    const { byPath } = summary.parsed;
    for (const missing of stateNotInArchive(summary.parsed.manifest.state, (rel) => byPath.has(rel)))
      warnings.push(missing);
  }
  return {
    target: abs,
    file_count: summary.file_count,
    sha256: summary.sha256,
    size_bytes: summary.size_bytes,
    format: summary.format,
    encrypted: summary.encrypted,
    kept,
    audit_key: auditKey,
    tool_version: toolVersion,
    warnings,
  };
}

async function restoreInto(
  source: AsyncIterable<Buffer | string>,
  target: string,
  opts: RestoreOptions,
): Promise<RestoreResult> {
  const done = await buildAndSwapIn(target, opts, (staging, ctx) =>
    extractInto(source, staging, ctx, path.resolve(target), opts),
  );
  return resultOf(done.value.summary, done.target, done.kept, opts, done.warnings, done.value.damage);
}

/**
 * What `dr verify` would fail in the state an archive holds, one warning a finding: what its
 * backup recorded (`wal_breaks`, `state_checks`) or, for an archive that records no state checks
 * (the Python original's, ours from before them), the checks run on `root`, where its state was
 * extracted (none: it holds no state to check). The audit chain is checked with the key the
 * archive carries, else with the one the restored workspace will use (`auditKeyPath`).
 */
async function stateDamage(
  summary: ArchiveSummary,
  root: string | undefined,
  opts: RestoreOptions,
): Promise<string[]> {
  const recorded = recordedDamage(summary.manifest_raw);
  if (recorded) return recorded;
  if (root === undefined) return [];
  const key = summary.audit_key
    ? { key: auditKeyBytes(summary.audit_key), named: "the audit key inside the archive" }
    : await auditKeyAt(opts.auditKeyPath);
  return stateWarnings(await checkState(root, key), await walChainBreaks(root), "in this archive");
}

/** What the state checks read: WALs and their closed markers, checkpoints, backup records, the audit log. */
const CHECKED_STATE = /^(?:runtime\/wal\/|runtime\/checkpoints\/|audit\/|runs\/backups\.jsonl$)/;

/**
 * `dr restore --dry-run`: reads and checks a whole archive as a restore does, and says what the
 * restore would warn of the state inside. An archive that records no state checks has the files
 * those checks read extracted into a temp folder (removed afterwards), checked there; nothing
 * else is written.
 */
export async function dryRunArchive(
  source: AsyncIterable<Buffer | string>,
  opts: RestoreOptions = {},
): Promise<{ summary: ArchiveSummary; warnings: string[] }> {
  opts = await withKeysAhead(source, opts);
  let recorded = false;
  let dir: string | undefined;
  let writer: StagingWriter | undefined;
  let interrupt: { release(): Promise<void> } | undefined;
  const staging = (): string => path.join(dir!, "sdd");
  const handler: ExtractHandler = {
    manifest: (raw) => {
      recorded = raw.state_checks !== undefined;
    },
    file: async (entry) => {
      if (recorded || !CHECKED_STATE.test(entry.path)) return undefined;
      if (!writer) {
        await removeDeadScratchDirs();
        dir = await makeScratchDir("dry-run");
        interrupt = cleanupOnInterrupt(`the dry run's temp folder ${shown(dir)}`, async () => {
          await writer?.close();
          await rm(dir!, { recursive: true, force: true, maxRetries: 5 });
        });
        await mkdir(staging(), { mode: 0o700 });
        writer = new StagingWriter(staging(), { fsync: false });
      }
      return writer.file(entry);
    },
  };
  try {
    let summary: ArchiveSummary;
    try {
      summary = await readArchive(source, handler, opts);
      await writer?.finish();
    } finally {
      await writer?.close();
    }
    return { summary, warnings: await stateDamage(summary, writer && staging(), opts) };
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
    await interrupt?.release();
  }
}

/** Extracts and checks an archive into `staging` (made here), ready to be swapped in as `target`. */
async function extractInto(
  source: AsyncIterable<Buffer | string>,
  staging: string,
  ctx: StagingBuild,
  target: string,
  opts: RestoreOptions,
): Promise<Extracted> {
  let writer: StagingWriter;
  try {
    mkdirSync(staging, { mode: 0o700 });
    writer = new StagingWriter(staging, { archiveBytes: opts.archiveBytes });
  } catch (err) {
    throw destinationError(`cannot restore into ${target}`, err) ?? err;
  }
  // Stopping a restore stops its reading too: a download that stalls (a store that stops
  // answering) would otherwise hold the failure path, and the interrupt that waits for it, for ever.
  ctx.beforeRemove(async () => {
    await writer.close();
    if (source instanceof Readable) source.destroy(new Error("the restore was interrupted"));
  });
  try {
    ctx.checkpoint();
    const summary = await readArchive(source, writer, opts);
    ctx.checkpoint();
    // The folders backups leave out by design (logs) or that the Python original does not have
    // (backlog/claimed, ...): a restored workspace has the layout `init` gives, so the first
    // doctor after a restore finds nothing missing.
    await writer.folders(WORKSPACE_DIRS);
    const record = restoreRecordOf(summary, opts.source);
    // Written before finish(): the one syncfs of the staging tree makes it durable too.
    await writer.writeFile(RESTORE_RECORD.join("/"), JSON.stringify(record, null, 2) + "\n");
    await writer.finish();
    ctx.checkpoint();
    // Read back from the staging folder, whose files were just written, before it is swapped in.
    const damage = await stateDamage(summary, staging, opts);
    // Appended (durably) before the swap: the restored workspace never lacks the row.
    const row = opts.backupLocation && restoredBackupRow(summary, opts.backupLocation);
    if (row) await appendBackupLog(new Workspace(staging), row);
    ctx.checkpoint();
    return { summary, damage };
  } catch (err) {
    await writer.close();
    throw err;
  }
}

/** An archive extracted into a staging folder, and the warnings of stateDamage. */
interface Extracted {
  summary: ArchiveSummary;
  damage: string[];
}

/** An archive extracted into a staging folder, its audit key not installed yet. */
export interface StagedArchive extends Extracted {
  opts: RestoreOptions;
}

/**
 * Extracts an archive straight into `staging`, the staging folder of a restore of `target` in
 * progress (the point-in-time restore's base snapshot): no lock, staging folder or swap of its
 * own, so that the restore holding `staging` is the one thing to stop and clean up. The archive's
 * audit key is installed by `stagedRestoreResult` once the restore has swapped in: installed (or
 * saved beside the target) before, it would stay when the restore fails or is interrupted later.
 */
export async function extractIntoStaging(
  source: AsyncIterable<Buffer | string>,
  staging: string,
  ctx: StagingBuild,
  target: string,
  opts: RestoreOptions = {},
): Promise<StagedArchive> {
  try {
    const keyed = await withKeysAhead(source, opts);
    return { ...(await extractInto(source, staging, ctx, target, keyed)), opts: keyed };
  } catch (err) {
    if (source instanceof Readable) source.destroy();
    throw err;
  }
}

/** The result of a restore that swapped in `staged` as `target`: its audit key installed now. */
export function stagedRestoreResult(staged: StagedArchive, target: string): Promise<RestoreResult> {
  return resultOf(staged.summary, target, undefined, staged.opts, [], staged.damage);
}

export async function restoreFromFile(
  from: string,
  target: string,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  const src = await openArchiveFile(from);
  const named: RestoreOptions = { label: from, source: path.resolve(from), archiveBytes: src.fileBytes };
  return restoreFromStream(src, target, resolveOptions(named, opts));
}

/** The restore record of a workspace, if it was restored by `dr restore`. */
export async function readRestoreRecord(sddRoot: string): Promise<RestoreRecord | undefined> {
  try {
    return JSON.parse(await readFile(path.join(sddRoot, ...RESTORE_RECORD), "utf8")) as RestoreRecord;
  } catch {
    return undefined;
  }
}
