/**
 * `dr backup`: a consistent, streamed, verified archive of a workspace.
 *
 * Memory flat: pass 1 (hash-pass.ts) decides how much of each file to copy (WAL and log cuts)
 * and hashes exactly that, which yields the manifest; pass 2 (pack.ts) streams manifest.json
 * first, then the files, read again and re-hashed (a file that changed in between fails the
 * attempt). The tar
 * stream goes through gzip (level 6, as `tar -czf`) and, when asked, the streaming Fernet or age
 * encryptor into any Writable. `backupToFile` writes to a temp file beside the destination,
 * fsyncs it and renames it into place only when complete.
 */
import { createHash } from "node:crypto";
import { access, constants as fsc, lstat, open, rm, stat, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Transform, Writable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { ExitCode, UserError, destinationError, ioError } from "../errors/errors.js";
import { TOOL_NAME, VERSION } from "../version.js";
import {
  durableRename,
  durableRenameNoReplace,
  fsyncDir,
  fsyncHandle,
  removeDeadTemps,
  tempPathFor,
  writeAllAt,
  type StagedFile,
} from "../workspace/durable.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import { shown } from "../workspace/shown-path.js";
import { keySignsAuditLog } from "../audit/log.js";
import { auditKeyBytes } from "../audit/key.js";
import type { Workspace } from "../workspace/layout.js";
import {
  AUDIT_KEY_ENTRY,
  FORMAT_VERSION,
  serializeManifest,
  sha256Hex,
  type Manifest,
  type ManifestFile,
  type RepositoryHead,
} from "./manifest.js";
import { hashPass, type Planned } from "./hash-pass.js";
import { openFileBudget } from "./open-file-budget.js";
import { FileChangedError, closeFiles, writeTar, type PackDir } from "./pack.js";
import { sealMember, sealStream } from "./seal.js";
import type { AgeSplitHasher, AgeSplitHashes } from "./age/split-hash.js";
import { removeSidecar, sidecarPath, stageSidecar } from "./sidecar.js";
import { requestSnapshot } from "./snapshot.js";
import { auditPosition, checkpointPosition } from "./state-position.js";
import { auditKeyAt, checkState, stateWarnings } from "./state-checks.js";
import {
  EXCLUDED_DIRS,
  EXCLUDED_PATTERNS,
  INCLUDED_DIRS,
  listWorkspace,
  walkWorkspace,
  type ExcludedEntry,
} from "./walk.js";

export const GZIP_LEVEL = 6;
/**
 * The deflate settings of a backup: `tar -czf`'s level, with zlib's largest match-finding hash
 * (memLevel 9; gzip's is 8). Twice the hash heads find the same matches with fewer probes: less
 * CPU at the same level and an archive no larger, for 256 KiB more memory. Any gzip reader
 * reads the result (memLevel is not in the stream).
 */
export const GZIP_OPTIONS = { level: GZIP_LEVEL, memLevel: 9 } as const;

export interface BackupOptions {
  /** Encrypt with this password (Fernet, PBKDF2 600k). */
  password?: string;
  /** Encrypt to these age recipients (`age1...`, `age1pq1...`) instead: a `.tar.gz.age` file. */
  recipients?: readonly string[];
  /**
   * The workspace's audit key file: the audit chain is checked with it (without it, that check is
   * skipped), and an encrypted archive carries it (as secrets/audit.key), if it exists.
   */
  auditKeyPath?: string;
  /** How long to wait for a live orchestrator to acknowledge the pause. */
  snapshotAckTimeoutMs?: number;
  /** Longest pause to ask the orchestrator for. */
  snapshotHoldMs?: number;
  /**
   * backupToFile: write `<archive>.sha256` beside it (default true). Off-site stores record the
   * sha256 in their own metadata and pass false.
   */
  sidecar?: boolean;
  /**
   * Called as files are read: first all of them are hashed ("hashing"), then read again into
   * the archive ("archiving"); `done` and `total` are bytes of files.
   */
  onProgress?: (phase: "hashing" | "archiving", done: number, total: number) => void;
  /** The repository's HEAD, asked for during the snapshot's pause (recorded as `repository`). */
  repositoryHead?: () => Promise<RepositoryHead | null>;
}

export interface BackupResult {
  manifest: Manifest;
  manifest_sha256: string;
  /** sha256 of the archive bytes as written (the encrypted file when encrypted). */
  sha256: string;
  size_bytes: number;
  file_count: number;
  /** An `.age` file's header and payload hashed apart (split-hash.ts): what a rekey carries over. */
  age?: AgeSplitHashes;
  warnings: string[];
}

/**
 * The encrypting stage. Its modules load only when a backup is encrypted: age's curves and
 * ML-KEM cost a plain backup a tenth of a second of start-up otherwise.
 */
async function createEncryptor(encryption: "age" | "fernet", opts: BackupOptions): Promise<Transform> {
  if (encryption === "age") {
    const { AgeEncryptor, ageEncryptStream } = await import("./age/encrypt.js");
    return ageEncryptStream(await AgeEncryptor.create(opts.recipients!));
  }
  const { FernetEncryptor, fernetEncryptStream } = await import("./fernet.js");
  return fernetEncryptStream(await FernetEncryptor.create(opts.password!));
}

/**
 * Counts and hashes what goes to the sink (an `.age` file also by header and payload). A plain
 * archive's sink gets the gzip member as it is, so the measure also seals it (`seal`): the seal's
 * digest is the running hash so far, not a second hash of the same bytes.
 */
class Measure extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor(
    readonly split?: AgeSplitHasher,
    private readonly seal = false,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.split?.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (!this.seal) return cb();
    const member = sealMember(this.hash.copy().digest());
    this.hash.update(member);
    this.bytes += member.length;
    cb(null, member);
  }
}

/** Pass 2: tar → gzip → seal → (Fernet or age) → sink, measuring the bytes that reach the sink. */
async function streamArchive(
  a: { manifestBytes: Buffer; dirs: PackDir[]; planned: Planned[]; totalBytes: number },
  encryptorP: Promise<Transform> | undefined,
  sink: Writable,
  onProgress: BackupOptions["onProgress"],
  split?: AgeSplitHasher,
): Promise<Measure> {
  const measure = new Measure(split, !encryptorP);
  // Output chunks under malloc's mmap threshold (128 KiB): each is reused heap, not a fresh
  // mapping whose every page faults in when touched.
  const gzip = createGzip({ ...GZIP_OPTIONS, chunkSize: 64 * 1024 });
  // The end-of-archive blocks travel in the seal member (seal.ts), after the data member.
  let archived = 0;
  const onBytes = onProgress
    ? (n: number): void => onProgress("archiving", (archived += n), a.totalBytes)
    : undefined;
  const rest = encryptorP ? [sealStream(), await encryptorP, measure, sink] : [measure, sink];
  const done = pipeline([gzip, ...rest]);
  try {
    await writeTar(gzip, a.manifestBytes, a.dirs, a.planned, { endOfArchive: false, onBytes });
    gzip.end();
  } catch (err) {
    gzip.destroy(err as Error);
  }
  // The pipeline rejects with the first failure: a file that changed, or the sink's own error.
  await done;
  return measure;
}

/**
 * Streams one backup archive of `ws` into `sink` (ended when done). The stream-level API: the
 * S3 engineer tees it into a multipart upload, replication serves it as a base snapshot.
 * Throws FileChangedError when a file changed between the two reads (callers may retry).
 */
export async function writeBackupArchive(
  ws: Workspace,
  sink: Writable,
  opts: BackupOptions = {},
): Promise<BackupResult> {
  const warnings: string[] = [];
  const encryption = encryptionOf(opts);
  const encrypting = encryption !== undefined;
  // Key derivation (≈0.5 s of PBKDF2 in the thread pool) overlaps the hashing pass.
  const encryptorP = encryption ? createEncryptor(encryption, opts) : undefined;
  encryptorP?.catch(() => {});
  const snapshot = await requestSnapshot(ws, {
    ackTimeoutMs: opts.snapshotAckTimeoutMs,
    holdMs: opts.snapshotHoldMs,
  });
  if (snapshot.warning) warnings.push(snapshot.warning);
  let released = false;
  // The files the hashing pass left open: pass 2 closes them, this function's end those left.
  let planned: Planned[] = [];
  const release = async (): Promise<Manifest["snapshot"]> => {
    released = true;
    return snapshot.release();
  };
  try {
    const createdAt = Date.now() / 1000;
    // Sizes before the hash pass only give a progress bar its total: without a bar, the hash
    // pass's fstat of each open file is the only stat it gets.
    const walk = opts.onProgress ? walkWorkspace(ws.root) : listWorkspace(ws.root);
    const hashed = await hashPass(
      walk.files,
      snapshot.positions,
      warnings,
      opts.onProgress && ((done, total) => opts.onProgress!("hashing", done, total)),
      openFileBudget(),
    );
    planned = hashed.planned;
    // What `dr verify` of the archive would fail besides a broken chain (hashPass names those):
    // backed up as found all the same, since a damaged workspace's backup is still its best copy.
    const stateChecks = await checkState(ws.root, await auditKeyAt(opts.auditKeyPath));
    warnings.push(...stateWarnings(stateChecks, [], "(backed up as found)"));

    const auditKey = encrypting ? await carryAuditKey(planned, opts.auditKeyPath, ws, warnings) : undefined;
    const repository = (await opts.repositoryHead?.()) ?? undefined;
    const { files, file_count, total_bytes } = manifestFiles(planned);
    // Key order is the manifest's byte format (docs/dr.md "manifest.json").
    const manifest: Manifest = {
      created_at: createdAt,
      included_dirs: [...INCLUDED_DIRS],
      excluded_dirs: [...EXCLUDED_DIRS],
      excluded_patterns: [...EXCLUDED_PATTERNS],
      format_version: FORMAT_VERSION,
      tool: { name: TOOL_NAME, version: VERSION },
      source: { host: os.hostname(), path: ws.root },
      encrypted: encrypting,
      audit_key_included: auditKey !== undefined,
      file_count,
      total_bytes,
      state: {
        wal: hashed.wal,
        audit: await auditPosition(ws.root),
        checkpoint: await checkpointPosition(ws.root, (rel) => planned.some((p) => p.rel === rel)),
      },
      // Filled in below, before the manifest is serialized (the pause covers pass 2 too).
      snapshot: { method: snapshot.method, wal_cut: "last-valid-entry" },
      ...(repository ? { repository } : {}),
      ...(hashed.walBreaks.length ? { wal_breaks: hashed.walBreaks } : {}),
      state_checks: stateChecks,
      dirs: walk.dirs.map((d) => ({ path: d.rel, mode: d.mode })),
      files,
    };
    if (snapshot.warning) manifest.snapshot.warning = snapshot.warning;
    const manifestBytes = serializeManifest(manifest);
    const manifestSha = sha256Hex(manifestBytes);

    const measure = await streamArchive(
      { manifestBytes, dirs: walk.dirs, planned, totalBytes: manifest.total_bytes },
      encryptorP,
      sink,
      opts.onProgress,
      encryption === "age" ? new (await import("./age/split-hash.js")).AgeSplitHasher() : undefined,
    );
    const snap = await release();
    if (snap.warning && !warnings.includes(snap.warning)) warnings.push(snap.warning);
    return {
      manifest,
      manifest_sha256: manifestSha,
      sha256: measure.hash.digest("hex"),
      size_bytes: measure.bytes,
      file_count: manifest.file_count,
      ...(measure.split ? { age: measure.split.digest() } : {}),
      warnings,
    };
  } finally {
    closeFiles(planned);
    if (!released) await snapshot.release().catch(() => {});
  }
}

/** The file rows of a manifest, and its counts (manifest.json itself is one of the files). */
function manifestFiles(planned: Planned[]): Pick<Manifest, "files" | "file_count" | "total_bytes"> {
  const files: ManifestFile[] = planned.map((p) => ({
    path: p.rel,
    size: p.length,
    mode: p.mode,
    sha256: p.sha256,
  }));
  return { file_count: files.length + 1, total_bytes: files.reduce((s, f) => s + f.size, 0), files };
}

/** Adds the audit key to what an encrypted backup archives (see auditKeyToCarry); returns it. */
async function carryAuditKey(
  planned: Planned[],
  keyPath: string | undefined,
  ws: Workspace,
  warnings: string[],
): Promise<Buffer | undefined> {
  if (!keyPath) return undefined;
  const carried = await auditKeyToCarry(ws, keyPath);
  if (!carried.key) {
    warnings.push(`the encrypted backup does not carry the audit key: ${carried.why}`);
    return undefined;
  }
  planned.push({
    rel: AUDIT_KEY_ENTRY,
    data: carried.key,
    length: carried.key.length,
    mode: 0o600,
    mtimeMs: Date.now(),
    sha256: sha256Hex(carried.key),
  });
  return carried.key;
}

/**
 * The key file an encrypted backup carries, or why none: there is no key file, or the key did
 * not sign the workspace's log (a restore verifies the chain with the key it carries, so a wrong
 * one is worse than none).
 */
async function auditKeyToCarry(
  ws: Workspace,
  keyPath: string,
): Promise<{ key: Buffer; why?: undefined } | { key?: undefined; why: string }> {
  const fix = "(set BERNSTEIN_AUDIT_KEY_PATH to the workspace's key)";
  const key = await readAuditKeyFile(keyPath);
  if (!key) return { why: `none found at ${shown(keyPath)} ${fix}` };
  if (!(await keySignsAuditLog(ws.auditDir, auditKeyBytes(key)))) {
    return { why: `the key at ${shown(keyPath)} did not sign the workspace's audit log ${fix}` };
  }
  return { key };
}

/** The audit key bytes, or undefined when there is no key file. */
async function readAuditKeyFile(file: string): Promise<Buffer | undefined> {
  try {
    const fh = await open(file, "r");
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** A Writable over a file handle whose end means "fsynced". */
export function durableFileSink(fh: Awaited<ReturnType<typeof open>>): Writable {
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    writev(chunks, cb) {
      const bufs = chunks.map((c) => c.chunk as Buffer);
      const total = bufs.reduce((n, b) => n + b.length, 0);
      fh.writev(bufs)
        .then(async ({ bytesWritten }) => {
          // A short writev (a filling disk, a file-size limit): the rest, whose failure is the error.
          if (bytesWritten < total) await writeAllAt(fh, Buffer.concat(bufs).subarray(bytesWritten), null);
        })
        .then(() => cb(), cb);
    },
    final(cb) {
      fsyncHandle(fh).then(() => cb(), cb);
    },
  });
}

export interface BackupFileResult extends BackupResult {
  path: string;
  encrypted: boolean;
}

/** How a backup is encrypted: to age recipients, with a password (Fernet), or not at all. */
export type Encryption = "age" | "fernet" | undefined;

export function encryptionOf(opts: { password?: string; recipients?: readonly string[] }): Encryption {
  if (opts.recipients?.length) return "age";
  return opts.password !== undefined ? "fernet" : undefined;
}

/**
 * Where `--to` puts a backup: `.enc` is appended when encrypting with a password, `.age` when to
 * age recipients, unless the name already ends in it.
 */
export function backupPath(to: string, encryption: Encryption | boolean): string {
  const ext = encryption === "age" ? ".age" : encryption ? ".enc" : "";
  return ext && !to.endsWith(ext) ? `${to}${ext}` : to;
}

/** The refusal to replace an existing backup (exit 6). */
function existsError(dest: string): UserError {
  return new UserError(
    `${dest} already exists; not replacing a backup (pass --force to replace it)`,
    ExitCode.IO,
  );
}

/** Checks the destination folder exists and is writable, and what is at the destination (exit 6). */
export async function checkDestination(dest: string, overwrite: boolean): Promise<void> {
  const dir = path.dirname(dest);
  const st = await stat(dir).catch(() => undefined);
  if (!st) throw new UserError(`cannot write ${dest}: folder ${dir} does not exist`, ExitCode.IO);
  if (!st.isDirectory()) throw new UserError(`cannot write ${dest}: ${dir} is not a folder`, ExitCode.IO);
  try {
    await access(dir, fsc.W_OK);
  } catch {
    throw new UserError(`cannot write ${dest}: folder ${dir} is not writable`, ExitCode.IO);
  }
  const existing = await lstat(dest).catch(() => undefined);
  if (existing?.isDirectory())
    throw new UserError(
      `cannot write ${dest}: it is a folder (--to names the backup file; --to-dir ${dest} writes a dated backup into it)`,
      ExitCode.IO,
    );
  if (existing && !overwrite) throw existsError(dest);
}

/**
 * Backup archives, their sidecars and catalogue records: the names whose temp files a backup
 * removes from its folder when their writers are dead (dated names never repeat, so only a
 * backup into the same folder, not to the same name, can find them).
 */
const BACKUP_FILE = /\.tar\.gz(?:\.enc|\.age)?(?:\.sha256|\.json)?(?:\.meta\.json)?$/;

/** Removes the temp files of backups into `dest`'s folder whose writers were killed. */
async function removeStaleTemps(dest: string): Promise<void> {
  const names = new Set([path.basename(dest), path.basename(sidecarPath(dest))]);
  await removeDeadTemps(path.dirname(dest), (name) => names.has(name) || BACKUP_FILE.test(name));
}

/**
 * Writes a backup to `to` (`to + ".enc"` when encrypting, see backupPath) atomically: temp file
 * beside it, fsync, rename, fsync folder, then its `.sha256` sidecar (sidecar.ts). Nothing appears
 * at the destination unless complete, and an existing file there is refused (exit 6) unless
 * `overwrite`, also when it appears while the backup runs (with `nextDest`, a generated name, the
 * backup takes the name it gives instead, as often as needed). SIGINT/SIGTERM remove the temp file
 * (interrupt.ts). A file changing between the two reads restarts the attempt (up to 3 attempts).
 */
export async function backupToFile(
  ws: Workspace,
  to: string,
  opts: BackupOptions & { overwrite?: boolean; nextDest?: (taken: string) => string } = {},
): Promise<BackupFileResult> {
  const encryption = encryptionOf(opts);
  const encrypted = encryption !== undefined;
  const overwrite = opts.overwrite ?? false;
  let dest = path.resolve(backupPath(to, encryption));
  // A generated name that is taken is settled at the rename below, which moves on to the next.
  await checkDestination(dest, overwrite || opts.nextDest !== undefined);
  await removeStaleTemps(dest);
  for (let attempt = 1; ; attempt++) {
    const tmp = tempPathFor(dest);
    // Registered before the file exists: a signal can come at any instant after.
    const interrupt = cleanupOnInterrupt(`the partial backup ${shown(tmp)}`, () => rm(tmp, { force: true }));
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(tmp, "wx", 0o600);
    } catch (err) {
      await interrupt.release();
      throw destinationError(`cannot write ${dest}`, err) ?? err;
    }
    let sidecar: StagedFile | undefined;
    let placed = false;
    try {
      const result = await writeBackupArchive(ws, durableFileSink(fh), opts);
      await fh.close();
      // Written before the archive is put in place: a disk too full for it fails the backup
      // while the destination is still as it was.
      if (opts.sidecar ?? true) sidecar = await stageSidecar(dest, result.sha256);
      await interrupt.release();
      // Replacing (--force): the old archive's sidecar goes first. Without --force a sidecar
      // there is another backup's that won the name meanwhile (its archive refuses ours), or a
      // leftover that the commit below replaces once our archive is in place.
      if (overwrite) {
        await removeSidecar(dest);
        await durableRename(tmp, dest);
      } else {
        for (;;) {
          const taken = await durableRenameNoReplace(tmp, dest).then(
            () => false,
            (err: NodeJS.ErrnoException) => {
              if (err.code !== "EEXIST" || !opts.nextDest)
                throw err.code === "EEXIST" ? existsError(dest) : err;
              return true;
            },
          );
          if (!taken) break;
          // A generated name another backup took while this one was written: the next one.
          dest = opts.nextDest!(dest);
          if (sidecar) {
            await sidecar.discard();
            sidecar = undefined;
            sidecar = await stageSidecar(dest, result.sha256);
          }
        }
      }
      placed = true;
      await sidecar?.commit();
      return { ...result, path: dest, encrypted };
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      await sidecar?.discard();
      // An archive this attempt put in place goes too, with whatever of its sidecar got there
      // (one that replaced an older archive stays: it is complete, and the older one is gone).
      if (placed && !overwrite) {
        await unlink(dest).catch(() => {});
        await removeSidecar(dest).catch(() => {});
      }
      await fsyncDir(path.dirname(dest)).catch(() => {});
      await interrupt.release();
      if (err instanceof FileChangedError && attempt < 3) continue;
      if (err instanceof FileChangedError) {
        throw new UserError(
          `backup: ${err.message} (3 attempts); is a writer running without the snapshot pause?`,
          ExitCode.CHECK_FAILED,
        );
      }
      throw ioError(`cannot write ${dest}`, err) ?? err;
    }
  }
}

export interface DryRunReport {
  sdd: string;
  file_count: number;
  total_bytes: number;
  audit_key_included: boolean;
  /** Why an encrypted backup would carry no audit key. */
  audit_key_left_out?: string;
  files: string[];
  excluded: ExcludedEntry[];
  live_writer: boolean;
}

/** What a backup would hold, without writing anything. */
export async function planBackup(
  ws: Workspace,
  opts: { encrypt?: boolean; auditKeyPath?: string } = {},
): Promise<DryRunReport> {
  const walk = walkWorkspace(ws.root);
  const key = opts.encrypt && opts.auditKeyPath ? await auditKeyToCarry(ws, opts.auditKeyPath) : undefined;
  const keyExists = key?.key !== undefined;
  const files = ["manifest.json", ...walk.files.map((f) => f.rel)];
  if (keyExists) files.push(AUDIT_KEY_ENTRY);
  const { readLock } = await import("../workspace/lock.js");
  const lock = await readLock(ws);
  return {
    sdd: ws.root,
    file_count: files.length,
    total_bytes: walk.files.reduce((s, f) => s + f.size, 0),
    audit_key_included: keyExists,
    ...(key?.why ? { audit_key_left_out: key.why } : {}),
    files,
    excluded: walk.excluded,
    live_writer: lock.state === "held",
  };
}
