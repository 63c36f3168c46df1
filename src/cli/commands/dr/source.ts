/**
 * Where `dr restore` and `dr verify` read an archive from, and how paths (shown-path.ts) and hashes are shown.
 * The reading modules load when an archive is opened: `dr backup` uses only the display helpers.
 */
import path from "node:path";
import type { Readable } from "node:stream";
import type { Command } from "../../../vendor/commander.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import type { BackupLogProblem, BackupLogRow } from "../../../dr/backup-log.js";
import type { AgeSplitHashes } from "../../../dr/age/split-hash.js";
import type { RekeyWatch } from "../../../dr/rekey-lock.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { readSidecar } from "../../../dr/sidecar.js";
import { absoluteLocation } from "../../../storage/location.js";
import { isOffsiteSource, openBackupSource } from "../../../storage/offsite.js";
import type { BackupStore } from "../../../storage/store.js";
import type { PasswordFlags } from "../../password.js";
import type { PointFlags } from "./archive-point.js";
import { s3OptionsFrom, type RemoteFlags } from "./options.js";

export const short = (sha: string): string => `${sha.slice(0, 16)}...`;

/**
 * The warning for a password (or --decrypt) given to read a plain archive: nothing fails, but
 * the user believed the archive encrypted. Undefined when there is nothing to say.
 */
export function unusedPasswordWarning(
  given: { password?: string; decrypt?: boolean },
  encrypted: boolean,
): string | undefined {
  if (encrypted || (given.password === undefined && !given.decrypt)) return undefined;
  return "the archive is plain; the password is not used";
}
export { shown } from "../../../workspace/shown-path.js";

/** The flags that name an archive to read, and how to read it. */
export type SourceFlags = PasswordFlags &
  RemoteFlags & {
    from?: string;
    latest?: boolean;
    at?: string;
    decrypt?: boolean;
    keyFile?: string;
    sha256?: string;
    identityFile?: string;
  };

export interface OpenedSource {
  stream: Readable;
  label: string;
  /** The archive's sha256 as recorded elsewhere: --sha256, its .sha256 sidecar, the store, or its record. */
  expectSha256?: string;
  expectSha256From?: string;
  /** An `.age` archive's recorded header and payload hashes, when no whole sha256 is recorded. */
  expectAge?: AgeSplitHashes;
  expectAgeFrom?: string;
  /** Off-site sources: where the backup's catalogue record (if any) lives. */
  stored?: { store: BackupStore; name: string };
  /** Bytes to read, when known (progress; a large archive's staging worker starts at once); else 0. */
  size: number;
  /** Why `--latest` took this backup, when it is not simply the newest: a warning to show. */
  note?: string;
  /** A local file (`--from`, or `--latest` of a local folder): whether a `dr rekey` changed it while it was read (dr/rekey-lock.ts). */
  rekeyWatch?: RekeyWatch;
  /** `--latest`: the next older verified backup there, named when this one is damaged. */
  olderVerified?: string;
}

/**
 * `read` of `src`. A local archive found damaged (exit 5) while a `dr rekey` of it ran, or
 * changed since it was opened, may be healthy: the bytes and what is recorded of them were read
 * at different moments of the rekey. That is exit 3 (run again), never a false exit 5.
 */
export async function readingSource<T>(src: OpenedSource, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (src.rekeyWatch && err instanceof UserError && err.exitCode === ExitCode.CORRUPT) {
      const busy = await src.rekeyWatch.busy();
      if (busy) throw busy;
    }
    // `--latest` took it, and it is damaged: the user's next step is the backup before it.
    if (src.olderVerified && err instanceof UserError && err.exitCode === ExitCode.CORRUPT)
      throw new UserError(
        `${src.label}: ${err.message}; the next older verified backup there is ${src.olderVerified} (--from it)`,
        err.exitCode,
        { ...err.details, older_verified: src.olderVerified },
      );
    throw err;
  }
}

/**
 * Runs `dr restore|verify` on a point of a WAL archive when the flags name one (archive-point.ts);
 * false when they name a backup. The archive code is loaded only when `--from` (or a point-only
 * flag) is given, so a plain `dr restore --latest --at` stays as small as it was.
 */
export async function ranOnArchivePoint(
  command: "restore" | "verify",
  cmd: Command,
  opts: PointFlags & { force?: boolean; keep?: boolean },
): Promise<boolean> {
  if (
    opts.from === undefined &&
    opts.atSeq === undefined &&
    opts.generation === undefined &&
    !opts.lastConsistent
  )
    return false;
  const point = await import("./archive-point.js");
  const src = await point.pointSourceOf(command, opts);
  if (!src) return false;
  if (command === "restore") await point.restorePointCommand(cmd, src, opts);
  else await point.verifyPointCommand(cmd, src, opts);
  return true;
}

/**
 * Where an opened archive is, as `runs/backups.jsonl` rows name it: `s3://…` as given, a local
 * file absolute (a runbook's commands work from any folder).
 */
export function archiveLocation(opened: OpenedSource): string {
  return absoluteLocation(opened.label);
}

/** The store and name an opened archive is at: a local file's folder is a store too. */
export async function storedAt(opened: OpenedSource): Promise<{ store: BackupStore; name: string }> {
  if (opened.stored) return opened.stored;
  const { LocalStore } = await import("../../../storage/local-store.js");
  return {
    store: new LocalStore(path.dirname(path.resolve(opened.label))),
    name: path.basename(opened.label),
  };
}

/**
 * What the archive's location records of its bytes, when neither --sha256, a `.sha256` sidecar
 * nor the store's metadata said: its record `<name>.json` (what `dr backup --to-dir` and `dr
 * schedule` write beside each archive, and `dr rekey` rewrites), its sha256, or for an `.age`
 * archive rekeyed header-only its header and payload hashes; else, for such an archive, the
 * newest row of the catalogue of the workspace at `sdd`.
 */
async function recordedHashes(opened: OpenedSource, sdd: string | undefined): Promise<void> {
  if (opened.expectSha256 !== undefined) return;
  const { readRecord } = await import("../../../storage/catalogue.js");
  const { splitHashesOf } = await import("../../../dr/age/split-hash.js");
  const at = await storedAt(opened);
  const record = await readRecord(at.store, at.name);
  const from = `the record ${at.store.describe(at.name)}.json`;
  if (record?.sha256) {
    opened.expectSha256 = record.sha256;
    opened.expectSha256From = from;
    return;
  }
  if (!opened.label.endsWith(".age")) return;
  const split = splitHashesOf(record);
  if (split) {
    opened.expectAge = split;
    opened.expectAgeFrom = from;
    return;
  }
  if (sdd === undefined || opened.stored) return;
  const row = splitHashesOf((await catalogueRows(sdd)).get(path.resolve(opened.label)));
  if (row) {
    opened.expectAge = row;
    opened.expectAgeFrom = "the workspace catalogue, runs/backups.jsonl";
  }
}

/**
 * The archive to read: a local file, `s3://bucket/key`, or `--latest --at LOCATION`; with what
 * its bytes are recorded to be (`sdd`: the workspace whose catalogue may say it).
 */
export async function openSource(opts: SourceFlags, sdd?: string): Promise<OpenedSource> {
  let opened: OpenedSource;
  if (isOffsiteSource(opts)) {
    const src = await openBackupSource(opts, s3OptionsFrom(opts));
    opened = {
      stream: src.stream,
      label: src.location,
      stored: { store: src.store, name: src.name },
      size: src.size ?? 0,
      note: src.note,
      olderVerified: src.olderVerified,
      rekeyWatch: src.rekeyWatch,
    };
    if (src.sha256) {
      opened.expectSha256 = src.sha256;
      opened.expectSha256From = "the store's sha256 metadata";
    }
  } else {
    if (opts.from === undefined) {
      throw new UserError("give --from FILE|s3://bucket/key, or --latest --at LOCATION", ExitCode.USAGE);
    }
    const { openArchiveFile } = await import("../../../dr/restore.js");
    const { watchForRekey } = await import("../../../dr/rekey-lock.js");
    // Before the file and what is recorded of it are read (rekey-lock.ts says why).
    const rekeyWatch = await watchForRekey(opts.from);
    const stream = await openArchiveFile(opts.from);
    opened = { stream, label: opts.from, size: stream.fileBytes, rekeyWatch };
  }
  // A refusal from here on closes what was opened: left to the garbage collector, an open file
  // handle is closed with a warning on stderr.
  try {
    if (opts.from !== undefined && !isOffsiteSource(opts)) {
      const sidecar = await readSidecar(opts.from);
      if (sidecar) {
        opened.expectSha256 = sidecar.sha256;
        opened.expectSha256From = sidecar.file;
      }
    }
    if (opts.sha256 !== undefined) {
      if (!/^[0-9a-fA-F]{64}$/.test(opts.sha256))
        throw new UserError(`--sha256 ${opts.sha256}: not 64 hex digits`, ExitCode.USAGE);
      opened.expectSha256 = opts.sha256.toLowerCase();
      opened.expectSha256From = "--sha256";
    }
    await recordedHashes(opened, sdd);
  } catch (err) {
    opened.stream.destroy();
    throw err;
  }
  return opened;
}

/**
 * The newest catalogue row (`runs/backups.jsonl`) of each location in the workspace at `sdd`;
 * empty when there is no workspace there (a host that only reads backups has none).
 */
export async function catalogueRows(
  sdd: string,
  problems?: BackupLogProblem[],
): Promise<Map<string, BackupLogRow>> {
  const ws = await openWorkspace(sdd).catch((err: unknown) => {
    if (err instanceof UserError) return undefined;
    throw err;
  });
  if (!ws) return new Map();
  const { newestRows } = await import("../../../dr/rekey.js");
  return newestRows(ws, problems);
}

/** The recipients' fingerprints the catalogue of `sdd` recorded for the archive at `location`. */
export async function cataloguedFingerprints(sdd: string, location: string): Promise<string[] | undefined> {
  const rows = await catalogueRows(sdd);
  return (rows.get(location) ?? rows.get(path.resolve(location)))?.recipient_fingerprints;
}
