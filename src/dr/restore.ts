/**
 * `dr restore`: extract into a staging folder beside the target, check every file against the
 * manifest (and the Fernet HMAC), fsync every file and folder, then swap with renames. The old
 * target is kept as `<target>.pre-restore-<UTC ts>` (or removed with --no-keep).
 *
 * Crash safety: before the two renames a journal (`.<name>.restore-journal.json` beside the
 * target) names the staging folder and the kept name. A crash between the renames leaves no
 * target; `completeInterruptedRestore` (run by every later `dr restore`, and by `doctor`) rolls
 * forward to the complete new state. Before the journal exists, the old target is untouched and
 * a leftover staging folder of a dead process is removed.
 *
 * Concurrency: every restore first takes the restore lock `.<name>.restore.lock` beside the target
 * (the workspace lock's format and stale-lock takeover). It lives beside the target because the
 * target may not exist yet, and it is a hidden file, never a folder, so that nothing takes it for
 * a workspace. A second restore of the same target is refused with exit 3 before it writes
 * anything; the journal roll-forward and the removal of dead staging folders run under it too.
 */
import { randomBytes } from "node:crypto";
import { constants, mkdirSync } from "node:fs";
import { open, readFile, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { ExitCode, UserError, destinationError, ioError, userErrorFromFs } from "../errors/errors.js";
import {
  atomicWriteFile,
  durableMkdir,
  durableRename,
  durableUnlink,
  removeDeadTemps,
} from "../workspace/durable.js";
import { resolveOptions } from "../json/object.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import { Workspace } from "../workspace/layout.js";
import {
  acquireLock,
  acquireLockFile,
  describeHolder,
  readLock,
  type WorkspaceLock,
} from "../workspace/lock.js";
import { isProcessAlive } from "../workspace/process.js";
import { SALT_BYTES, startKeyDerivation, type KeyCache } from "./fernet.js";
import { StagingWriter } from "./staging-writer.js";
import { readArchive, type ArchiveSummary, type ReadArchiveOptions } from "./unpack.js";
import { TOOL_NAME, VERSION } from "../version.js";

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
  /** Restore even while a live process holds the target's lock. */
  force?: boolean;
  /** Keep the previous target as `<target>.pre-restore-<ts>` (default true). */
  keep?: boolean;
  /** The resolved audit key path where an archive's key is installed. */
  auditKeyPath?: string;
  /** Where the archive came from, for the restore record. */
  source?: string;
}

export interface AuditKeyOutcome {
  action: "installed" | "unchanged" | "kept-existing" | "none";
  path?: string;
  /** When a different key exists: where the archive's key was saved for --key-file. */
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

const utcStamp = (d = new Date()): string =>
  d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
const journalPath = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.restore-journal.json`);
const stagingPrefix = (target: string): string => `.${path.basename(target)}.restore-`;
/** The restore lock of `target` (not a staging name: those start with `stagingPrefix`). */
export const restoreLockPath = (target: string): string =>
  path.join(path.dirname(target), `.${path.basename(target)}.restore.lock`);

/** Takes the restore lock of `target` (its folder must exist), or exit 3 naming the restore holding it. */
async function acquireRestoreLock(target: string): Promise<WorkspaceLock> {
  try {
    return await acquireLockFile(restoreLockPath(target), {
      command: "dr restore",
      refuse: (holder) =>
        new UserError(
          `${target} is being restored by ${describeHolder(holder)}; wait for it to finish, then restore again if you still need to`,
          ExitCode.LOCKED,
          { holder },
        ),
    });
  } catch (err) {
    throw ioError(`cannot restore into ${target}`, err) ?? err;
  }
}

interface Journal {
  target: string;
  staging: string;
  kept: string | null;
  remove_kept: boolean;
}

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Finishes or undoes a restore that was interrupted (SIGKILL, power loss). Returns what it did.
 * Safe to call any time (it takes the restore lock: exit 3 while a restore runs); a no-op when
 * there is no journal.
 */
export async function completeInterruptedRestore(target: string): Promise<string | undefined> {
  const abs = path.resolve(target);
  if (!(await exists(path.dirname(abs)))) return undefined;
  const lock = await acquireRestoreLock(abs);
  try {
    return await finishInterruptedRestore(abs);
  } finally {
    await lock.release();
  }
}

/** completeInterruptedRestore, for a caller that holds the restore lock. */
async function finishInterruptedRestore(abs: string): Promise<string | undefined> {
  const jp = journalPath(abs);
  let j: Journal;
  try {
    j = JSON.parse(await readFile(jp, "utf8")) as Journal;
  } catch {
    return undefined;
  }
  let action: string;
  if (await exists(j.staging)) {
    if (!(await exists(abs))) {
      await durableRename(j.staging, abs); // the old target was moved away: roll forward
      action = "rolled forward an interrupted restore";
    } else {
      await rm(j.staging, { recursive: true, force: true }); // swap never started: roll back
      action = "removed the staging folder of an interrupted restore";
    }
  } else {
    action = "finished an interrupted restore";
  }
  if (j.remove_kept && j.kept) await rm(j.kept, { recursive: true, force: true });
  await durableUnlink(jp).catch(() => {});
  return action;
}

/**
 * Removes staging folders left by restores whose process died before the swap, and the temp
 * file of a journal being written when one died.
 */
async function removeStaleStaging(target: string): Promise<void> {
  const dir = path.dirname(target);
  const names = await readdir(dir).catch(() => [] as string[]);
  const journal = path.basename(journalPath(target));
  await removeDeadTemps(dir, (name) => name === journal, names);
  const prefix = stagingPrefix(target);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isProcessAlive(pid)) {
      await rm(path.join(dir, name), { recursive: true, force: true });
    }
  }
}

export async function openArchiveFile(from: string): Promise<Readable> {
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
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    throw new UserError(`--from ${from}: not a regular file`, ExitCode.USAGE);
  }
  return fh.createReadStream({ highWaterMark: 64 * 1024 });
}

/**
 * When `file` is an encrypted archive, starts deriving its key into `cache` (pass the cache
 * to the restore): the 0.1 s of PBKDF2 then runs while the restore gets ready.
 */
export async function startKeyDerivationFor(file: string, password: string, cache: KeyCache): Promise<void> {
  const fh = await open(file, "r").catch(() => undefined);
  if (!fh) return; // the restore itself reports it
  try {
    const head = Buffer.alloc(SALT_BYTES + 6);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    startKeyDerivation(head.subarray(0, bytesRead), password, cache);
  } finally {
    await fh.close();
  }
}

/** Reads and checks a whole archive without writing anything (dry-run, verify). */
export async function inspectArchive(
  source: AsyncIterable<Buffer | string>,
  opts: ReadArchiveOptions = {},
): Promise<ArchiveSummary> {
  return readArchive(source, {}, opts);
}

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
  if (!existing) {
    await durableMkdir(path.dirname(keyPath), 0o700);
    await atomicWriteFile(keyPath, key, { mode: 0o600 });
    return { action: "installed", path: keyPath };
  }
  if (existing.toString("utf8").trim() === key.toString("utf8").trim())
    return { action: "unchanged", path: keyPath };
  const saved = `${target}.audit-key-from-backup`;
  await atomicWriteFile(saved, key, { mode: 0o600 });
  return {
    action: "kept-existing",
    path: keyPath,
    saved_copy: saved,
    message: `a different audit key exists at ${keyPath} and was kept; the backup's key is saved at ${saved}: verify the restored chain with \`bernstein audit verify --sdd ${target} --key-file ${saved}\``,
  };
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
    return await restoreInto(source, target, opts);
  } catch (err) {
    // A restore refused before it read (a live lock, say) releases the file or connection now.
    if (source instanceof Readable) source.destroy();
    throw err;
  }
}

async function restoreInto(
  source: AsyncIterable<Buffer | string>,
  target: string,
  opts: RestoreOptions,
): Promise<RestoreResult> {
  const abs = path.resolve(target);
  const parent = path.dirname(abs);
  const warnings: string[] = [];
  try {
    await durableMkdir(parent);
  } catch (err) {
    throw destinationError(`cannot restore into ${abs}: cannot create ${parent}`, err) ?? err;
  }
  // One restore of a target at a time, whether the target exists yet or not.
  const restoreLock = await acquireRestoreLock(abs);
  let lock: WorkspaceLock | undefined;
  try {
    if (restoreLock.tookOver) warnings.push(`restore lock: ${restoreLock.tookOver}`);
    const recovered = await finishInterruptedRestore(abs);
    if (recovered) warnings.push(`${recovered} at ${abs}`);

    // Refuse early while a live process owns the target.
    const targetExists = await exists(abs);
    if (targetExists) {
      const ws = new Workspace(abs);
      const state = await readLock(ws);
      if (state.state === "held") {
        if (!opts.force) {
          throw new UserError(
            `${abs} is in use by ${describeHolder(state.info)}; stop it first, or pass --force`,
            ExitCode.LOCKED,
            { holder: state.info },
          );
        }
        warnings.push(`restoring over a workspace in use by ${describeHolder(state.info)} (--force)`);
      } else if (await exists(ws.runtimeDir)) {
        lock = await acquireLock(ws, "dr restore");
        if (lock.tookOver) warnings.push(lock.tookOver);
      }
    }
    await removeStaleStaging(abs);
    const staging = path.join(
      parent,
      `${stagingPrefix(abs)}${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    // Registered before the folder exists: a signal can come at any instant after.
    let writer: StagingWriter | undefined;
    const interrupt = cleanupOnInterrupt(`the restore's staging folder ${staging}`, async () => {
      await writer?.close(); // no file is created in it after this
      await rm(staging, { recursive: true, force: true, maxRetries: 5 });
      // The process exits after the cleanups: its locks go with it, not left for a takeover.
      await lock?.release().catch(() => {});
      await restoreLock.release().catch(() => {});
    });
    try {
      mkdirSync(staging, { mode: 0o700 });
      writer = new StagingWriter(staging);
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => {});
      await interrupt.release();
      throw destinationError(`cannot restore into ${abs}`, err) ?? err;
    }
    let summary: ArchiveSummary;
    let kept: string | null = null;
    const keep = opts.keep ?? true;
    // Until a journal names the staging folder, any failure (the final rename included) removes
    // it: a failed restore leaves nothing behind.
    let journaled = false;
    try {
      summary = await readArchive(source, writer, opts);
      const manifestTool =
        (summary.manifest_raw.tool as { name?: string; version?: string } | undefined) ?? undefined;
      const record: RestoreRecord = {
        restored_at: new Date().toISOString(),
        source: opts.source ?? "stream",
        archive_sha256: summary.sha256,
        manifest_sha256: summary.manifest_sha256,
        format: summary.format,
        tool: manifestTool?.name
          ? { name: manifestTool.name, version: manifestTool.version ?? null }
          : { name: "bernstein (python reference)", version: null },
        restored_by: { name: TOOL_NAME, version: VERSION },
        file_count: summary.file_count,
      };
      // Written before finish(): the one syncfs of the staging tree makes it durable too.
      await writer.writeFile(RESTORE_RECORD.join("/"), JSON.stringify(record, null, 2) + "\n");
      await writer.finish();
      // From here a signal has its default action: the swap below is journaled (see the top).
      await interrupt.release();

      // Swap. Into an empty place it is one atomic rename (a crash before it leaves only a staging
      // folder, removed by the next restore). Over an existing target it takes two renames, so a
      // journal first records how to finish them (completeInterruptedRestore).
      if (targetExists) {
        kept = `${abs}.pre-restore-${utcStamp()}`;
        for (let i = 1; await exists(kept); i++) kept = `${abs}.pre-restore-${utcStamp()}-${i}`;
        const journal: Journal = { target: abs, staging, kept, remove_kept: !keep };
        await atomicWriteFile(journalPath(abs), JSON.stringify(journal) + "\n");
        journaled = true;
        await durableRename(abs, kept);
        await durableRename(staging, abs);
        // Our lock file moved with the old tree; it is not a lock of anything now.
        if (lock) await rm(path.join(kept, "runtime", "bernstein.pid"), { force: true });
        lock = undefined;
        if (!keep) await rm(kept, { recursive: true, force: true });
        await durableUnlink(journalPath(abs));
      } else {
        await durableRename(staging, abs).catch((err: NodeJS.ErrnoException) => {
          // Restores are kept out by the restore lock; something else (an `init`) made the target.
          if (err.code === "ENOTEMPTY" || err.code === "EEXIST")
            throw new UserError(
              `${abs} was created by another process while this restore ran; nothing was changed (restore again to replace it)`,
              ExitCode.LOCKED,
            );
          throw err;
        });
      }
    } catch (err) {
      if (!journaled) {
        await writer.close();
        await rm(staging, { recursive: true, force: true }).catch(() => {});
      }
      await interrupt.release();
      throw ioError(`cannot restore into ${abs}`, err) ?? err;
    }

    const auditKey = await installAuditKey(
      summary.audit_key,
      opts.auditKeyPath,
      abs,
      summary.encrypted,
    ).catch((err: Error) => ({
      action: "none" as const,
      message: `could not install the backup's audit key: ${err.message}`,
    }));
    if (auditKey.message && auditKey.action !== "none") warnings.push(auditKey.message);
    const toolVersion = (summary.manifest_raw.tool as { version?: string } | undefined)?.version ?? null;
    if (toolVersion && toolVersion !== VERSION) {
      warnings.push(`the backup was written by ${TOOL_NAME} ${toolVersion}; this is ${VERSION}`);
    }
    return {
      target: abs,
      file_count: summary.file_count,
      sha256: summary.sha256,
      size_bytes: summary.size_bytes,
      format: summary.format,
      encrypted: summary.encrypted,
      kept: keep && kept ? kept : undefined,
      audit_key: auditKey,
      tool_version: toolVersion,
      warnings,
    };
  } finally {
    await lock?.release().catch(() => {});
    await restoreLock.release().catch(() => {});
  }
}

export async function restoreFromFile(
  from: string,
  target: string,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  const src = await openArchiveFile(from);
  const keyCache = opts.keyCache ?? new Map();
  if (opts.password !== undefined) await startKeyDerivationFor(from, opts.password, keyCache);
  const named: RestoreOptions = { label: from, source: path.resolve(from) };
  return restoreFromStream(src, target, resolveOptions(named, opts, { keyCache }));
}

/** The restore record of a workspace, if it was restored by `dr restore`. */
export async function readRestoreRecord(sddRoot: string): Promise<RestoreRecord | undefined> {
  try {
    return JSON.parse(await readFile(path.join(sddRoot, ...RESTORE_RECORD), "utf8")) as RestoreRecord;
  } catch {
    return undefined;
  }
}
