/**
 * The hook between the DR commands and storage: where a backup goes (`dr backup --to
 * s3://bucket/key`, `--to-dir LOCATION`) and where one comes from (`--from s3://...`,
 * `--latest --at LOCATION`). The archive itself is produced by src/dr (passed in as
 * `produce`); this module never builds archives.
 *
 * Remote backups are written completely to a local file first, then uploaded from it: a failed
 * upload never loses the backup (the local copy stays and its path is in the error, exit 7),
 * and the SHA-256 that the upload carries is known before the first byte is sent.
 */
import type { AgeSplitHashes } from "../dr/age/split-hash.js";
import type { RekeyWatch } from "../dr/rekey-lock.js";
import { createReadStream } from "node:fs";
import { rm, unlink } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { ExitCode, UserError } from "../errors/errors.js";
import { durableMkdir, makeDestinationFolder, refuseFileAsFolder } from "../workspace/durable.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import {
  backupName,
  encryptionSuffix,
  latestBackup,
  parseBackupName,
  sha256Of,
  storeBackup,
  writeRecordFor,
  type BackupRecord,
} from "./catalogue.js";
import { holdLocalCopy, localCopyDir, removeLeftoverLocalCopies, type LeftoverCopy } from "./local-copy.js";
import { isS3Url, parseCatalogueLocation, parseObjectLocation } from "./location.js";
import { LocalStore } from "./local-store.js";
import { openCatalogue, openObject } from "./open-store.js";
import type { S3Options } from "./s3-store.js";
import type { BackupStore, RetryInfo } from "./store.js";
import { shown } from "../workspace/shown-path.js";
import { setLongTimeout } from "../workspace/timer.js";

/** What the DR producer reports about the archive it wrote. */
export interface ProducedBackup {
  path: string;
  sha256: string;
  manifest_sha256: string | null;
  file_count: number | null;
  size_bytes: number;
  encrypted: boolean;
  /** The manifest's WAL position per run (recorded in runs/backups.jsonl). */
  wal_positions?: Record<string, { seq: number; entry_hash: string } | null>;
  /** An `.age` archive's header and payload hashed apart (recorded next to sha256). */
  age?: AgeSplitHashes;
}

/**
 * Writes the archive to `target` (the producer appends ".enc" or ".age" when encrypting); `overwrite`: an
 * existing file there may be replaced (else the producer refuses it). `nextTarget`, for a generated
 * name: when another backup takes the archive's name while it is written, the full path (suffix
 * included) to try instead, and the producer reports the name it got in `path`.
 */
export type Producer = (
  target: string,
  opts: { overwrite: boolean; nextTarget?: (taken: string) => string },
) => Promise<ProducedBackup>;

export interface OffsiteBackupRequest {
  /** `s3://bucket/key`: one object. */
  to?: string;
  /** A catalogue location: a folder or `s3://bucket/prefix/`. */
  toDir?: string;
  encrypted: boolean;
  /** Encrypted to age recipients: names end in `.age` rather than `.enc`. */
  age?: boolean;
  produce: Producer;
  /** Replace a backup that exists under the same name (`dr backup --force`). */
  force?: boolean;
  s3?: S3Options;
  /** Where the complete local copy of a remote backup is written (default: localCopyDir()). */
  localCopyDir?: string;
  /** Keep the local copy after a successful upload. */
  keepLocal?: boolean;
  /** After upload, download every byte again and compare its SHA-256. */
  fullReadBack?: boolean;
  onRetry?: (info: RetryInfo) => void;
  /** Called once the destination is known to take the backup (folder made, bucket listed, name free). */
  onDestinationChecked?: () => void;
  /** Called as the store accepts the archive: bytes stored so far, of `total`. */
  onUploadProgress?: (stored: number, total: number) => void;
  now?: Date;
}

export interface OffsiteBackupResult {
  /** Where the backup is: `s3://bucket/key` or a file path. */
  location: string;
  /** The catalogue root it belongs to. */
  root: string;
  name: string;
  /** The time in the name (UTC, second resolution for catalogue names). */
  created_at: string;
  remote: boolean;
  record: BackupRecord | null;
  retries: number;
  /** The local copy still on disk (remote backups with --keep-local), else null. */
  local_copy: string | null;
  /** Local copies of remote backups that never ended, removed before this one was written. */
  removed_local_copies: LeftoverCopy[];
  produced: ProducedBackup;
}

/** True when `dr backup` must go through this module rather than write a plain file. */
export function isOffsiteDestination(opts: { to?: string; toDir?: string }): boolean {
  return opts.toDir !== undefined || (opts.to !== undefined && isS3Url(opts.to));
}

/** True when `dr restore/verify` read from a remote object or a catalogue. */
export function isOffsiteSource(opts: { from?: string; latest?: boolean; at?: string }): boolean {
  return Boolean(opts.latest) || opts.at !== undefined || (opts.from !== undefined && isS3Url(opts.from));
}

/** The name without its encryption suffix: the producer appends it again. */
function withoutEnc(name: string): string {
  return /\.(enc|age)$/.test(name) ? name.slice(0, -".enc".length) : name;
}

/**
 * A local catalogue location (`--to-dir DIR`) made when missing, or exit 6 naming it (a file in
 * its place, a file system that refuses it); with `checkOnly` (a dry run) nothing is created. An
 * s3:// location is checked by its first listing.
 */
export async function makeCatalogueFolder(toDir: string, checkOnly = false): Promise<void> {
  const loc = parseCatalogueLocation(toDir);
  if (loc.kind !== "dir") return;
  if (checkOnly) await refuseFileAsFolder(loc.path, `--to-dir ${toDir}`);
  else await makeDestinationFolder(loc.path, `--to-dir ${toDir}`);
}

export async function backupOffsite(req: OffsiteBackupRequest): Promise<OffsiteBackupResult> {
  if ((req.to === undefined) === (req.toDir === undefined)) {
    throw new UserError("dr backup: give exactly one of --to and --to-dir", ExitCode.USAGE);
  }
  const remote =
    (req.toDir !== undefined ? parseCatalogueLocation(req.toDir) : parseObjectLocation(req.to as string))
      .kind === "s3";
  let store: BackupStore;
  let name = "";
  if (req.toDir !== undefined) store = await openCatalogue(req.toDir, req.s3);
  else {
    const target = await openObject(req.to as string, req.s3);
    store = target.store;
    const suffix = encryptionSuffix(req.encrypted && (req.age ? "age" : "fernet"));
    name = suffix && !target.key.endsWith(suffix) ? `${target.key}${suffix}` : target.key;
  }
  if (!remote) {
    if (req.toDir !== undefined) await makeCatalogueFolder(req.toDir);
    else await makeDestinationFolder(store.root, `cannot create ${store.root}`);
  }
  // Listing first checks the bucket and the credentials before a long backup is produced.
  const exists = async (key: string) => (await store.list(key)).some((o) => o.key === key);
  let now = req.now ?? new Date();
  const nameAt = (d: Date) => backupName(d, req.encrypted && (req.age ? "age" : "fernet"));
  // A generated name another backup took: the next second's (the name is ours, not the user's,
  // so it is never a reason to fail or to replace).
  const nextName = (taken: string) => nameAt(new Date(parseBackupName(taken)!.created.getTime() + 1000));
  if (req.toDir !== undefined) {
    name = nameAt(now);
    // Names have one-second resolution: a second backup within the same second waits for the next.
    for (let i = 0; i < 3 && req.now === undefined && (await exists(name)); i++) {
      await new Promise<void>((r) => setLongTimeout(r, 1000 - (Date.now() % 1000) + 5));
      now = new Date();
      name = nameAt(now);
    }
    while (!req.force && (await exists(name))) {
      name = nextName(name);
      now = parseBackupName(name)!.created;
    }
  }
  if (!req.force && (await exists(name))) {
    throw new UserError(
      `${store.describe(name)} already exists; not replacing a backup (pass --force to replace it)`,
      ExitCode.IO,
    );
  }
  const ours = parseBackupName(name) !== undefined;
  req.onDestinationChecked?.();

  if (!remote) {
    // A local catalogue folder: the producer writes in place (atomically); we re-read every
    // byte before the record that marks it verified is written.
    const produced = await req.produce(path.join(store.root, withoutEnc(name)), {
      overwrite: req.force ?? false,
      nextTarget:
        req.toDir !== undefined && !req.force
          ? (taken) => path.join(path.dirname(taken), nextName(path.basename(taken)))
          : undefined,
    });
    if (path.basename(produced.path) !== name) {
      name = path.basename(produced.path);
      now = parseBackupName(name)!.created;
    }
    const back = await sha256Of(createReadStream(produced.path));
    if (back.sha256 !== produced.sha256) {
      throw new UserError(
        `${produced.path}: read back sha256 ${back.sha256}, the archive was written as ${produced.sha256}`,
        ExitCode.CORRUPT,
      );
    }
    const record = ours ? await writeRecordFor(store, name, produced, now) : null;
    return {
      location: produced.path,
      root: store.root,
      name,
      created_at: now.toISOString(),
      remote,
      record,
      retries: 0,
      local_copy: null,
      removed_local_copies: [],
      produced,
    };
  }

  const dir = req.localCopyDir ? path.resolve(req.localCopyDir) : localCopyDir();
  await durableMkdir(dir).catch((err: unknown) => {
    throw new UserError(`cannot create the local copy folder ${dir}: ${(err as Error).message}`, ExitCode.IO);
  });
  const removedLocalCopies = await removeLeftoverLocalCopies(dir);
  // Held until the copy is removed or kept on purpose: a copy whose marker outlives its process
  // is a leftover (local-copy.ts).
  let marker = await holdLocalCopy(path.join(dir, name));
  const markerOnInterrupt = cleanupOnInterrupt("the local copy's marker", () => marker.release(), {
    silent: true,
  });
  // The local copy is ours to replace: whether the store holds the name was checked above.
  let produced: ProducedBackup;
  try {
    produced = await req.produce(path.join(dir, withoutEnc(name)), { overwrite: true });
    if (produced.path !== path.join(dir, name)) {
      // A plain backup to a key ending in .enc or .age: the copy lacks the key's suffix.
      const named = await holdLocalCopy(produced.path);
      await marker.release();
      marker = named;
    }
  } catch (err) {
    await markerOnInterrupt.release();
    await marker.release();
    throw err;
  }
  // An interrupted upload leaves no local copy behind either (dated names would pile up).
  const interrupt = req.keepLocal
    ? undefined
    : cleanupOnInterrupt(`the local copy ${shown(produced.path)}`, () => rm(produced.path, { force: true }));
  let stored: Awaited<ReturnType<typeof storeBackup>>;
  try {
    stored = await storeBackup(
      store,
      name,
      produced.path,
      {
        sha256: produced.sha256,
        manifest_sha256: produced.manifest_sha256,
        file_count: produced.file_count,
        encrypted: produced.encrypted,
        created_at: now,
        age: produced.age,
      },
      {
        fullReadBack: req.fullReadBack,
        onRetry: req.onRetry,
        writeRecord: ours,
        onProgress: req.onUploadProgress && ((n) => req.onUploadProgress!(n, produced.size_bytes)),
      },
    );
  } catch (err) {
    await interrupt?.release();
    await markerOnInterrupt.release();
    // Kept on purpose: the error names it for an upload by hand.
    await marker.release();
    const message = err instanceof Error ? err.message : String(err);
    throw new UserError(`${message}; the complete backup is kept at ${produced.path}`, ExitCode.REMOTE, {
      local_copy: produced.path,
      sha256: produced.sha256,
      removed_local_copies: removedLocalCopies.map((c) => c.path),
    });
  }
  await interrupt?.release();
  await markerOnInterrupt.release();
  const settled =
    req.keepLocal ||
    (await unlink(produced.path).then(
      () => true,
      () => false,
    ));
  // A copy that could not be removed keeps its marker, stale once this process exits: the next
  // remote backup removes it.
  if (settled) await marker.release();
  return {
    location: stored.location,
    root: store.root,
    name,
    created_at: now.toISOString(),
    remote,
    record: stored.record,
    retries: stored.retries,
    local_copy: req.keepLocal ? produced.path : null,
    removed_local_copies: removedLocalCopies,
    produced,
  };
}

export interface BackupSource {
  stream: Readable;
  /** Full location of the backup read. */
  location: string;
  name: string;
  store: BackupStore;
  /** By name (`.enc`, `.age`); the DR reader should still sniff the bytes. */
  encrypted: boolean;
  size: number | null;
  /** The sha256 the store recorded when the backup was uploaded (metadata `sha256`), if any. */
  sha256?: string;
  /** Why `--latest` took this backup, when it is not simply the newest (a warning to show). */
  note?: string;
  /** `--latest`: the next older verified backup's location, to name if this one is damaged. */
  olderVerified?: string;
  /** A backup in a local folder: whether a `dr rekey` changed it while it was read (dr/rekey-lock.ts). */
  rekeyWatch?: RekeyWatch;
}

/** Opens a backup for restore/verify: `--from s3://bucket/key` or `--latest --at LOCATION`. */
export async function openBackupSource(
  opts: { from?: string; latest?: boolean; at?: string },
  s3: S3Options = {},
): Promise<BackupSource> {
  let store: BackupStore;
  let name: string;
  let note: string | undefined;
  let olderVerified: string | undefined;
  if (opts.latest || opts.at !== undefined) {
    if (!opts.latest || opts.at === undefined || opts.from !== undefined) {
      throw new UserError("use --latest --at LOCATION, or --from FILE|s3://bucket/key", ExitCode.USAGE);
    }
    store = await openCatalogue(opts.at, s3);
    const latest = await latestBackup(store);
    name = latest.entry.name;
    note = latest.note;
    if (latest.older) olderVerified = store.describe(latest.older.name);
  } else if (opts.from !== undefined) {
    const target = await openObject(opts.from, s3);
    store = target.store;
    name = target.key;
  } else {
    throw new UserError("give --from FILE|s3://bucket/key or --latest --at LOCATION", ExitCode.USAGE);
  }
  // Before its metadata and its bytes are read (rekey-lock.ts says why); loaded for a local folder only.
  const rekeyWatch =
    store instanceof LocalStore
      ? await (await import("../dr/rekey-lock.js")).watchForRekey(store.describe(name))
      : undefined;
  const info = await store.head(name);
  if (!info) throw new UserError(`${store.describe(name)}: no such backup`, ExitCode.USAGE);
  return {
    rekeyWatch,
    stream: await store.get(name),
    location: store.describe(name),
    name,
    store,
    encrypted: /\.(enc|age)$/.test(name),
    size: info.size,
    sha256: /^[0-9a-f]{64}$/.test(info.metadata.sha256 ?? "") ? info.metadata.sha256 : undefined,
    note,
    olderVerified,
  };
}
