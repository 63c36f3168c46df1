/**
 * The backup catalogue of one location, written once against BackupStore.
 *
 * A backup is the object `bernstein-backup-<UTC yyyymmddThhmmssZ>.tar.gz[.enc|.age]` plus its record
 * `<name>.json`, written only after the upload was read back and found intact: a record is
 * the proof that the backup was verified. Anything else at the location is foreign: never
 * listed as a backup, never pruned.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import os from "node:os";
import { Readable } from "node:stream";
import { ExitCode, UserError, withLeftover } from "../errors/errors.js";
import type { BackupStore, ObjectInfo, RetryInfo } from "./store.js";
import { LocalStore } from "./local-store.js";
import { AgeSplitHasher, splitHashesOf, splitMismatch, type AgeSplitHashes } from "../dr/age/split-hash.js";
import { isS3Url } from "./location.js";
import { newestVerified } from "./retention.js";

export const RECORD_FORMAT = "bernstein-backup-record/1";
const NAME_RE = /^bernstein-backup-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\.tar\.gz(\.enc|\.age)?$/;

/** The facts about one backup, stored as `<name>.json` next to it. */
export interface BackupRecord {
  format: typeof RECORD_FORMAT;
  name: string;
  created_at: string;
  size_bytes: number;
  /**
   * The whole object's sha256; null after a header-only `dr rekey` of an `.age` archive, whose
   * bytes the three `age_*` fields state instead (src/dr/age/split-hash.ts).
   */
  sha256: string | null;
  manifest_sha256: string | null;
  file_count: number | null;
  encrypted: boolean;
  source_host: string;
  /** When the stored bytes were last found to match sha256 (upload read-back or dr verify). */
  verified_at: string | null;
  age_header_bytes?: number;
  age_header_sha256?: string;
  age_payload_sha256?: string;
}

export interface CatalogueEntry {
  name: string;
  created: Date;
  encrypted: boolean;
  size: number;
  record?: BackupRecord;
  /** A record exists, agrees with the object's size, and carries verified_at. */
  verified: boolean;
}

export interface Catalogue {
  /** Oldest first. */
  entries: CatalogueEntry[];
  /** Keys at the location that are not ours (never touched). */
  foreign: string[];
  /** Records whose backup is gone (a prune that failed between the two deletes): prune removes them. */
  orphanRecords: string[];
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** How a backup is encrypted, as its name says: true or "fernet" `.enc`, "age" `.age`. */
export type NameEncryption = boolean | "fernet" | "age" | undefined;

/** The suffix a backup name gets after `.tar.gz` for its encryption. */
export function encryptionSuffix(encryption: NameEncryption): string {
  return encryption === "age" ? ".age" : encryption ? ".enc" : "";
}

/** `bernstein-backup-<UTC timestamp>.tar.gz[.enc|.age]` for a backup taken at `date`. */
export function backupName(date: Date, encrypted: NameEncryption): string {
  const ts =
    `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}T` +
    `${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  return `bernstein-backup-${ts}.tar.gz${encryptionSuffix(encrypted)}`;
}

/** The time and encryption a backup name says, or undefined for a name that is not ours. */
export function parseBackupName(name: string): { created: Date; encrypted: boolean } | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const created = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Reject impossible dates (2026-02-31) rather than let Date roll them over.
  if (created.getUTCMonth() !== mo - 1 || created.getUTCDate() !== d || h > 23 || mi > 59 || s > 59)
    return undefined;
  return { created, encrypted: m[7] !== undefined };
}

/**
 * The catalogue location (a folder, or `s3://bucket/prefix/`) holding the backup at `location`
 * when its name is a catalogue backup's (`bernstein-backup-<UTC>...`); undefined for any other
 * archive (`dr backup --to FILE`).
 */
export function catalogueFolderOf(location: string): string | undefined {
  const name = location.slice(location.lastIndexOf("/") + 1);
  if (!parseBackupName(name)) return undefined;
  const folder = location.slice(0, location.length - name.length);
  return isS3Url(folder) ? folder : folder.replace(/\/+$/, "") || "/";
}

export function recordKey(name: string): string {
  return `${name}.json`;
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new Error(`larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function readRecord(store: BackupStore, name: string): Promise<BackupRecord | undefined> {
  try {
    const raw = await readAll(await store.get(recordKey(name)), 64 * 1024);
    const rec = JSON.parse(raw.toString("utf8")) as BackupRecord;
    if (rec.format !== RECORD_FORMAT || rec.name !== name) return undefined;
    return rec;
  } catch (err) {
    if (
      err instanceof UserError &&
      (err.exitCode === ExitCode.REMOTE || err.details?.problem === "credentials")
    )
      throw err;
    return undefined;
  }
}

/**
 * Writes the record that makes a just-stored archive a backup. When it cannot be written the
 * archive is removed, best effort: a backup that failed must not stay at the location as if it
 * were one. The error says whether the archive is gone or still there.
 */
async function writeNewRecord(store: BackupStore, record: BackupRecord): Promise<void> {
  try {
    await writeRecord(store, record);
  } catch (err) {
    const where = store.describe(record.name);
    // The archive only: no record was written, and an orphan one would name nothing.
    const left = await store.delete(record.name).then(
      () => `${where} was removed (without its record it is no backup)`,
      (rmErr: unknown) =>
        `${where} could not be removed (${rmErr instanceof Error ? rmErr.message : String(rmErr)}): ` +
        "it stays without a record, listed as unverified and passed over by --latest; delete it by hand",
    );
    throw withLeftover(err, left);
  }
}

async function writeRecord(store: BackupStore, record: BackupRecord): Promise<void> {
  await store.put(
    recordKey(record.name),
    Readable.from([Buffer.from(JSON.stringify(record, null, 2) + "\n")]),
    {
      metadata: { "bernstein-record": "1" },
    },
  );
}

/** Every backup at the location (oldest first) and every foreign key. */
export async function listCatalogue(store: BackupStore): Promise<Catalogue> {
  return catalogueOf(store, await store.list());
}

async function catalogueOf(store: BackupStore, objects: ObjectInfo[]): Promise<Catalogue> {
  const byKey = new Map<string, ObjectInfo>(objects.map((o) => [o.key, o]));
  const entries: CatalogueEntry[] = [];
  const foreign: string[] = [];
  const orphanRecords: string[] = [];
  for (const o of objects) {
    const parsed = parseBackupName(o.key);
    if (parsed) {
      const record = byKey.has(recordKey(o.key)) ? await readRecord(store, o.key) : undefined;
      entries.push({
        name: o.key,
        created: parsed.created,
        encrypted: parsed.encrypted,
        size: o.size,
        record,
        verified: Boolean(record?.verified_at) && record?.size_bytes === o.size,
      });
    } else if (o.key.endsWith(".json") && parseBackupName(o.key.slice(0, -".json".length))) {
      if (!byKey.has(o.key.slice(0, -".json".length))) orphanRecords.push(o.key);
    } else {
      foreign.push(o.key);
    }
  }
  entries.sort((a, b) => a.created.getTime() - b.created.getTime() || (a.name < b.name ? -1 : 1));
  return { entries, foreign, orphanRecords };
}

/** The backup `--latest` takes, and a line to show when it is not simply the newest one. */
export interface LatestBackup {
  entry: CatalogueEntry;
  note?: string;
  /** The next older verified backup: what to name when `entry` turns out damaged. */
  older?: CatalogueEntry;
}

/**
 * The newest verified backup at the location (the one prune never deletes): a newer one without
 * a verified record is a backup that failed or was never read back, not one to restore. Only
 * when none is verified, the newest of all, and the note says so.
 */
export async function latestBackup(store: BackupStore): Promise<LatestBackup> {
  const { entries } = await listCatalogue(store);
  const newest = entries.at(-1);
  if (!newest) throw new UserError(`${store.root}: no bernstein backups here`, ExitCode.USAGE);
  const verified = newestVerified(entries);
  if (!verified)
    return {
      entry: newest,
      note: `no backup at ${store.root} is verified (a record that matches it); taking the newest, ${newest.name}, unverified`,
    };
  const older = newestVerified(entries.slice(0, entries.indexOf(verified)));
  const passed = entries.slice(entries.indexOf(verified) + 1);
  if (!passed.length) return { entry: verified, older };
  return {
    entry: verified,
    older,
    note: `taking ${verified.name}, the newest verified backup at ${store.root}; passed over ${passed.length === 1 ? "a newer unverified one" : `${passed.length} newer unverified ones`} (${passed.map((e) => e.name).join(", ")}): a backup that failed, or one without its record`,
  };
}

export interface BackupFacts {
  sha256: string;
  manifest_sha256: string | null;
  file_count: number | null;
  encrypted: boolean;
  created_at: Date;
  source_host?: string;
  age?: AgeSplitHashes;
}

/** Hex SHA-256 of a stream's bytes. */
export async function sha256Of(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of stream) {
    hash.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

/**
 * Stores a finished local archive at `name`: streamed upload with its SHA-256, read-back of
 * size and metadata (and of every byte with `readBack: "full"`), then the record. Any failure
 * throws before the record is written (a failed record write removes the archive again); the
 * local file is never touched.
 */
export async function storeBackup(
  store: BackupStore,
  name: string,
  localFile: string,
  facts: BackupFacts,
  options: {
    fullReadBack?: boolean;
    onRetry?: (info: RetryInfo) => void;
    writeRecord?: boolean;
    onProgress?: (bytesStored: number) => void;
  } = {},
): Promise<{ record: BackupRecord | null; retries: number; location: string }> {
  const put = await store.put(name, createReadStream(localFile), {
    sha256: facts.sha256,
    onRetry: options.onRetry,
    onProgress: options.onProgress,
    metadata: {
      "manifest-sha256": facts.manifest_sha256 ?? "",
      "file-count": facts.file_count === null ? "" : String(facts.file_count),
      encrypted: String(facts.encrypted),
      "source-host": facts.source_host ?? os.hostname(),
      "created-at": facts.created_at.toISOString(),
    },
  });
  if (options.fullReadBack) {
    const back = await sha256Of(await store.get(name));
    if (back.sha256 !== facts.sha256 || back.size !== put.size) {
      await store.delete(name).catch(() => {});
      throw new UserError(
        `${store.describe(name)}: full read-back has sha256 ${back.sha256}, expected ${facts.sha256}`,
        ExitCode.CORRUPT,
      );
    }
  }
  const record: BackupRecord = {
    format: RECORD_FORMAT,
    name,
    created_at: facts.created_at.toISOString(),
    size_bytes: put.size,
    sha256: facts.sha256,
    manifest_sha256: facts.manifest_sha256,
    file_count: facts.file_count,
    encrypted: facts.encrypted,
    source_host: facts.source_host ?? os.hostname(),
    verified_at: new Date().toISOString(),
    ...facts.age,
  };
  if (options.writeRecord === false)
    return { record: null, retries: put.retries, location: store.describe(name) };
  await writeNewRecord(store, record);
  return { record, retries: put.retries, location: store.describe(name) };
}

/**
 * The record of a backup written in place (a local folder) and already re-read by the caller;
 * when it cannot be written the archive is removed again.
 */
export async function writeRecordFor(
  store: BackupStore,
  name: string,
  facts: {
    sha256: string;
    manifest_sha256: string | null;
    file_count: number | null;
    encrypted: boolean;
    size_bytes: number;
    age?: AgeSplitHashes;
  },
  createdAt: Date,
): Promise<BackupRecord> {
  const record: BackupRecord = {
    format: RECORD_FORMAT,
    name,
    created_at: createdAt.toISOString(),
    size_bytes: facts.size_bytes,
    sha256: facts.sha256,
    manifest_sha256: facts.manifest_sha256,
    file_count: facts.file_count,
    encrypted: facts.encrypted,
    source_host: os.hostname(),
    verified_at: new Date().toISOString(),
    ...facts.age,
  };
  await writeNewRecord(store, record);
  return record;
}

/**
 * After `dr rekey` changed an archive's bytes: the record of `from` now describes `name` (the
 * same name, or the `.age` that replaced a `.enc`) with the new sha256 and size. A location
 * without a record for `from` is left alone. Returns whether a record was written.
 */
export async function recordRekeyed(
  store: BackupStore,
  from: string,
  name: string,
  facts: { sha256: string | null; size_bytes: number; age?: AgeSplitHashes },
): Promise<boolean> {
  const record = await readRecord(store, from);
  if (!record) return false;
  const { age_header_bytes: _b, age_header_sha256: _h, age_payload_sha256: _p, ...rest } = record;
  await writeRecord(store, {
    ...rest,
    name,
    sha256: facts.sha256,
    size_bytes: facts.size_bytes,
    encrypted: true,
    ...facts.age,
  });
  if (from !== name) await store.delete(recordKey(from));
  return true;
}

/**
 * After a successful `dr verify`, refresh the record's verified_at (only if it matches: its
 * sha256, or, when it has none, its `age_*` hashes that the verify checked).
 */
export async function markVerified(
  store: BackupStore,
  name: string,
  sha256: string,
  checkedSplit?: AgeSplitHashes,
): Promise<boolean> {
  const record = await readRecord(store, name);
  const split =
    record?.sha256 === null && checkedSplit && !splitMismatch(checkedSplit, splitHashesOf(record));
  if (!record || (record.sha256 !== sha256 && !split)) return false;
  await writeRecord(store, { ...record, verified_at: new Date().toISOString() });
  return true;
}

/** What the audit chain says was written to this location. */
export interface ExpectedBackup {
  name: string;
  /** null: a header-only rekey of an `.age` archive, stated by `age` instead. */
  sha256: string | null;
  age?: AgeSplitHashes;
  size_bytes?: number;
  written_at?: string;
}

export interface CheckFinding {
  name: string;
  status: "ok" | "missing" | "replaced" | "unrecorded";
  detail: string;
}

/**
 * Compares what exists with what was written: a recorded backup that is gone is `missing`;
 * one whose stored sha256 (metadata, or every byte with `deep`) or size differs is `replaced`;
 * a backup here that no audit event wrote is `unrecorded`.
 */
export async function checkCatalogue(
  store: BackupStore,
  expected: ExpectedBackup[],
  options: { deep?: boolean } = {},
): Promise<CheckFinding[]> {
  const objects = await store.list();
  const { entries } = await catalogueOf(store, objects);
  // By every key, not only catalogue names: a plain `dr backup --to DIR/<name>` is expected by its
  // own name, which the catalogue lists as foreign.
  const present = new Map(objects.map((o) => [o.key, o]));
  const findings: CheckFinding[] = [];
  const latestExpected = new Map<string, ExpectedBackup>();
  for (const e of expected) latestExpected.set(e.name, e);
  for (const exp of latestExpected.values())
    findings.push(await checkOne(store, exp, present.get(exp.name), options.deep ?? false));
  for (const entry of entries) {
    if (!latestExpected.has(entry.name)) {
      findings.push({ name: entry.name, status: "unrecorded", detail: "no audit event wrote this backup" });
    }
  }
  return findings.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Whether one backup is what was written: `present` is its listing (none: gone). The size first,
 * then the sha256: from the stored metadata, or from every byte with `deep` or when the store
 * keeps no sha256 metadata (a file copied in by hand).
 */
async function checkOne(
  store: BackupStore,
  exp: ExpectedBackup,
  present: ObjectInfo | undefined,
  deep: boolean,
): Promise<CheckFinding> {
  if (!present)
    return { name: exp.name, status: "missing", detail: `written ${exp.written_at ?? "earlier"}, gone now` };
  if (exp.size_bytes !== undefined && exp.size_bytes !== present.size)
    return { name: exp.name, status: "replaced", detail: `size ${present.size}, written ${exp.size_bytes}` };
  if (exp.age) {
    const bad = await splitFinding(store, { ...exp, age: exp.age }, deep);
    if (bad !== false) return bad;
  }
  const everyByte = deep || !(await store.head(exp.name))?.metadata.sha256;
  const actual = everyByte
    ? (await sha256Of(await store.get(exp.name))).sha256
    : (await store.head(exp.name))?.metadata.sha256;
  if (actual !== exp.sha256)
    return {
      name: exp.name,
      status: "replaced",
      detail: `sha256 ${actual ?? "unknown"}, written ${exp.sha256}${everyByte ? "" : " (stored metadata)"}`,
    };
  return {
    name: exp.name,
    status: "ok",
    detail: everyByte ? "every byte matches" : "sha256 metadata matches",
  };
}

/**
 * Whether a listed backup still holds what its record says, by the check `dr list --check` makes
 * of one backup: a local file is hashed whole (its sha256 sidecar was written with the file and
 * cannot tell bit rot since); on an object store the size and the sha256 the store keeps tell as
 * much as can be told without a download (every byte when it keeps none). `ok` only when proved.
 */
export async function proveIntact(store: BackupStore, entry: CatalogueEntry): Promise<CheckFinding> {
  const record = entry.record;
  if (!record) return { name: entry.name, status: "unrecorded", detail: "no record to check it against" };
  const age = splitHashesOf(record);
  const exp: ExpectedBackup = {
    name: entry.name,
    sha256: record.sha256,
    ...(age ? { age } : {}),
    size_bytes: record.size_bytes,
    written_at: record.created_at,
  };
  return checkOne(store, exp, await store.head(entry.name), store instanceof LocalStore);
}

/** The whole sha256, the size and the header/payload hashes (split at `headerBytes`) of a stream. */
export async function hashesOf(stream: Readable, headerBytes: number) {
  const whole = createHash("sha256");
  const split = new AgeSplitHasher(headerBytes);
  let size = 0;
  for await (const c of stream) {
    whole.update(c as Buffer);
    split.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: whole.digest("hex"), size, split: split.digest() };
}

/**
 * The finding for an `.age` backup whose header and payload were recorded apart: read once, both
 * ranges hashed (and the whole sha256, when one was recorded too). False when the stored sha256
 * metadata can decide instead (a whole sha256 recorded, not --deep).
 */
async function splitFinding(
  store: BackupStore,
  exp: ExpectedBackup & { age: AgeSplitHashes },
  deep: boolean,
): Promise<CheckFinding | false> {
  if (exp.sha256 !== null && !deep && (await store.head(exp.name))?.metadata.sha256) return false;
  const actual = await hashesOf(await store.get(exp.name), exp.age.age_header_bytes);
  const bad =
    splitMismatch(exp.age, actual.split) ??
    (exp.sha256 !== null && actual.sha256 !== exp.sha256
      ? `sha256 ${actual.sha256}, written ${exp.sha256}`
      : undefined);
  return bad
    ? { name: exp.name, status: "replaced", detail: bad }
    : { name: exp.name, status: "ok", detail: "every byte matches (header and payload sha256)" };
}

/**
 * Deletes a backup and its record (the backup first: an orphan record is harmless, and the next
 * prune removes it). `onArchiveDeleted` runs once the backup is gone, before its record goes.
 */
export async function deleteBackup(
  store: BackupStore,
  name: string,
  onArchiveDeleted: () => void = () => {},
): Promise<void> {
  if (!parseBackupName(name)) throw new UserError(`refusing to delete ${name}: not a bernstein backup name`);
  await store.delete(name);
  onArchiveDeleted();
  await store.delete(recordKey(name));
}
