/**
 * `dr rekey`: new keys for an existing archive, as a use case over the catalogue.
 *
 * - `.age`: only the header is rewritten (`age/rekey.ts`). Adding recipients keeps the old
 *   stanzas; removing needs the archive's full recipient set, which the header does not reveal
 *   (X25519 stanzas name no recipient): it comes from the catalogue row, or the caller gives the
 *   new full set.
 * - `.enc`: re-encrypted streaming with a new password, or converted to age (`reencrypt.ts`).
 *
 * Every rekeyed archive gets a new catalogue row (same location, or the `.age` one, with its
 * new sha256 and recipients): the newest row of a location is its truth. An `.age` archive's
 * row, record and audit event carry its header and payload hashes apart (`age/split-hash.ts`):
 * a header rewritten in place carries the payload's over and its whole sha256 becomes null. `--all` skips archives
 * whose newest row already has the target set, so a killed run resumes where it stopped.
 */
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import type { Workspace } from "../workspace/layout.js";
import { rekeyAgeFile } from "./age/rekey.js";
import { AgeIdentityError, identityFailure, recipientFingerprint } from "./age/keys.js";
import { AgeFormatError } from "./age/header.js";
import { appendBackupLog, readBackupLog, type BackupLogProblem, type BackupLogRow } from "./backup-log.js";
import { reencryptFernetFile } from "./reencrypt.js";
import { recordAuditEvent } from "./audit-event.js";
import { DR_REKEY_EVENT } from "../storage/audit-record.js";
import { listCatalogue, readRecord, recordRekeyed } from "../storage/catalogue.js";
import { LocalStore } from "../storage/local-store.js";
import type { BackupStore } from "../storage/store.js";
import { rekeyAgeObject } from "./age/rekey-object.js";
import type { RekeyPlan } from "./age/rekey.js";
import { removeSidecar, writeSidecar } from "./sidecar.js";
import { splitHashesOf } from "./age/split-hash.js";
import { acquireRekeyLock } from "./rekey-lock.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";

export interface RekeyRequest {
  identities?: readonly string[];
  /** The old password of a `.enc` archive. */
  password?: string;
  add: readonly string[];
  remove: readonly string[];
  /** The new full set (`--recipients-file`), replacing whatever the archive had. */
  fullSet?: readonly string[];
  newPassword?: string;
  toAge?: boolean;
}

export interface RekeyOutcome {
  from: string;
  path: string;
  /** The location's catalogue record (`<name>.json`) now names the new bytes. */
  record_updated?: boolean;
  /** A local archive's rekey lock was left by a process that is gone, and taken over. */
  lock_warning?: string;
  /** Why the rekey is not in the audit chain (the workspace was locked, no audit key). */
  audit_warning?: string;
  action: "header-rewritten" | "re-encrypted" | "converted-to-age" | "already-done";
  /** header-rewritten: only the header bytes were written (else the archive was copied). */
  in_place?: boolean;
  /** An object store's rewrite: the payload copied inside the store, or streamed again (docs/dr.md). */
  method?: "server-copy" | "streamed";
  recipient_fingerprints?: string[];
  /** The new bytes' sha256; null when only the header was hashed (the `age_*` fields state them). */
  sha256?: string | null;
  size_bytes?: number;
  age_header_bytes?: number;
  age_header_sha256?: string;
  age_payload_sha256?: string;
  /** `.age`: whether the payload was read (no split hashes recorded to carry its sha256 over). */
  payload_read?: boolean;
}

/** The newest catalogue row of every location. */
export async function newestRows(
  ws: Workspace,
  problems?: BackupLogProblem[],
): Promise<Map<string, BackupLogRow>> {
  const rows = new Map<string, BackupLogRow>();
  for await (const row of readBackupLog(ws, problems)) {
    const seen = rows.get(row.location);
    if (!seen || row.created_at >= seen.created_at) rows.set(row.location, row);
  }
  return rows;
}

const usage = (m: string): UserError => new UserError(m, ExitCode.USAGE);

/** The recipient set an `.age` archive gets, and whether its old stanzas stay. */
function targetSet(
  file: string,
  req: RekeyRequest,
  row: BackupLogRow | undefined,
): { set?: string[]; keep: boolean } {
  if (req.fullSet) return { set: [...new Set([...req.fullSet, ...req.add])], keep: false };
  if (!req.remove.length) {
    const known = row?.recipients;
    return { set: known ? [...new Set([...known, ...req.add])] : undefined, keep: !known };
  }
  const known = row?.recipients;
  if (!known) {
    throw usage(
      `the recipients of ${file} are not in the catalogue (runs/backups.jsonl); give the new full set with --recipients-file`,
    );
  }
  for (const r of req.remove)
    if (!known.includes(r)) throw usage(`--remove-recipient ${r}: not a recipient of ${file}`);
  const set = [...new Set([...known.filter((r) => !req.remove.includes(r)), ...req.add])];
  if (!set.length) throw usage(`removing every recipient of ${file} would leave nobody able to open it`);
  return { set, keep: false };
}

const sameSet = (a: readonly string[] | undefined, b: readonly string[]): boolean =>
  a !== undefined && a.length === b.length && b.every((r) => a.includes(r));

/**
 * Whether the newest catalogue row already has what `req` asks for (a resumed `--all`): the full
 * set, or every removed recipient gone and every added one there. An add-only request cannot
 * tell (the catalogue may not know the old set), so it is never "done".
 */
function alreadyDone(req: RekeyRequest, row: BackupLogRow | undefined): boolean {
  const known = row?.recipients;
  if (!known) return false;
  if (req.fullSet) return sameSet(known, [...new Set([...req.fullSet, ...req.add])]);
  return (
    req.remove.length > 0 &&
    req.remove.every((r) => !known.includes(r)) &&
    req.add.every((r) => known.includes(r))
  );
}

/**
 * The usage errors of rekeying `file` (an `.age` or `.enc` archive) with `req`, thrown before
 * anything changes: `--all` checks every archive with it before rekeying the first.
 */
function checkNeeds(file: string, req: RekeyRequest, row: BackupLogRow | undefined, skipDone: boolean): void {
  if (!/\.(age|enc)$/.test(file))
    throw usage(`${file}: not an encrypted archive (.age or .enc); a plain archive has no keys to rotate`);
  if (file.endsWith(".age")) {
    if (!req.identities)
      throw usage(
        `${file} is an age archive: pass --identity-file FILE (or BERNSTEIN_DR_IDENTITY_FILE) that opens it`,
      );
    if (!(skipDone && alreadyDone(req, row))) targetSet(file, req, row);
    return;
  }
  if (req.password === undefined) {
    throw usage(
      `${file} is encrypted with a password: pass --password-file FILE (or BERNSTEIN_DR_PASSWORD) that opens it`,
    );
  }
  if (req.toAge) {
    if (!req.add.length && !req.fullSet?.length)
      throw usage("--to-age needs the recipients: --add-recipient or --recipients-file");
  } else if (req.newPassword === undefined) {
    throw usage(
      `${file} is a password-encrypted (.enc) archive: pass --new-password-file FILE, or --to-age with recipients`,
    );
  }
}

/** Where an archive is: a local file, or an object in a store (S3). */
type ArchiveAt = { file: string; store?: undefined } | { file: string; store: BackupStore; key: string };

type AgeRewritten = {
  in_place: boolean;
  method?: "server-copy" | "streamed";
  payload_read?: boolean;
  sha256: string | null;
  size_bytes: number;
  age_header_bytes: number;
  age_header_sha256: string;
  age_payload_sha256: string;
};

/**
 * The new header, written the way the archive's place allows; then `record` with the new hashes
 * and size, as part of the rewrite (a local one finishes it when interrupted, age/rekey.ts).
 */
async function rewriteAge(
  at: ArchiveAt,
  plan: RekeyPlan,
  record: (r: AgeRewritten) => Promise<RekeyOutcome>,
): Promise<RekeyOutcome> {
  if (at.store) {
    const r = await rekeyAgeObject(at.store, at.key, plan);
    return record({
      in_place: false,
      method: r.method,
      sha256: r.sha256,
      size_bytes: r.size_bytes,
      ...r.age,
    });
  }
  const file = at.file;
  // A sidecar naming the old sha256 must not outlive the old header.
  return rekeyAgeFile(file, { ...plan, beforeChange: () => removeSidecar(file) }, async (r) => {
    // The whole file's sha256 is known only when the payload was read: then the sidecar names it;
    // otherwise there is none (sha256sum cannot check a range), and the records state the ranges.
    if (r.sha256 !== undefined) await writeSidecar(file, r.sha256);
    const sha256 = r.sha256 ?? null;
    return record({
      in_place: r.in_place,
      payload_read: r.payload_read,
      sha256,
      size_bytes: r.size_bytes,
      ...r.age,
    });
  });
}

/** What the archive's row, else its location's record `<name>.json`, says of its header and payload. */
async function recordedSplit(at: ArchiveAt, row: BackupLogRow | undefined): Promise<RekeyPlan["recorded"]> {
  const fromRow = splitHashesOf(row);
  if (fromRow) return { split: fromRow, size_bytes: row!.size_bytes };
  const record = at.store
    ? await readRecord(at.store, at.key)
    : await readRecord(new LocalStore(path.dirname(at.file)), path.basename(at.file));
  const fromRecord = splitHashesOf(record);
  return fromRecord && { split: fromRecord, size_bytes: record!.size_bytes };
}

/** Rekeys an `.age` archive; `record` is run as part of it (see age/rekey.ts). */
async function rekeyAge(
  at: ArchiveAt,
  req: RekeyRequest,
  row: BackupLogRow | undefined,
  skipDone: boolean,
  record: (done: Done) => Promise<RekeyOutcome>,
): Promise<RekeyOutcome> {
  const file = at.file;
  checkNeeds(file, req, row, skipDone);
  if (skipDone && alreadyDone(req, row)) return record({ from: file, path: file, action: "already-done" });
  const { set, keep } = targetSet(file, req, row);
  const added = keep ? req.add : set!;
  try {
    return await rewriteAge(
      at,
      {
        identities: req.identities!,
        recipients: added,
        keepExisting: keep,
        recorded: await recordedSplit(at, row),
      },
      (r) => record({ from: file, path: file, action: "header-rewritten", ...r, recipients: set }),
    );
  } catch (err) {
    if (err instanceof AgeIdentityError) throw identityFailure(file, err, row?.recipient_fingerprints);
    if (err instanceof AgeFormatError)
      throw new UserError(`cannot rekey ${file}: ${err.message}`, ExitCode.CORRUPT);
    throw err;
  }
}

/** Re-encrypts or converts a `.enc` archive; `record` is run as part of it (see reencrypt.ts). */
async function rekeyEnc(file: string, req: RekeyRequest, record: (done: Done) => Promise<RekeyOutcome>) {
  checkNeeds(file, req, undefined, false);
  const password = req.password!;
  if (req.toAge) {
    const recipients = [...new Set([...(req.fullSet ?? []), ...req.add])];
    return reencryptFernetFile(file, password, { recipients }, (r) =>
      record({
        from: file,
        path: r.path,
        action: "converted-to-age",
        recipients,
        sha256: r.sha256,
        size_bytes: r.size_bytes,
      }),
    );
  }
  return reencryptFernetFile(file, password, { password: req.newPassword! }, (r) =>
    record({ from: file, path: r.path, action: "re-encrypted", sha256: r.sha256, size_bytes: r.size_bytes }),
  );
}

type Done = RekeyOutcome & { recipients?: string[] };

/**
 * What a rekey leaves besides the new bytes: the location's record (`<name>.json`) names them,
 * a `dr.rekey` audit event (so `dr list --check` expects them) and a catalogue row.
 */
async function recordDone(
  done: Done,
  at: { store: BackupStore; from: string; name: string; local: boolean },
  ws: Workspace | undefined,
  row: BackupLogRow | undefined,
): Promise<RekeyOutcome> {
  const { recipients, ...out } = done;
  const fingerprints: { recipient_fingerprints?: string[] } = recipients
    ? { recipient_fingerprints: recipients.map(recipientFingerprint) }
    : {};
  const age = splitHashesOf(done);
  if (done.sha256 !== undefined && done.size_bytes !== undefined) {
    const facts = { sha256: done.sha256, size_bytes: done.size_bytes };
    out.record_updated = await recordRekeyed(at.store, at.from, at.name, { ...facts, age });
    // A catalogue location states sha256 in its record, as `dr backup --to-dir` wrote it: a
    // sidecar there would be a foreign file.
    if (out.record_updated && at.local) await removeSidecar(done.path);
    if (ws) {
      const audit = await recordAuditEvent(ws, {
        event_type: DR_REKEY_EVENT,
        resource_type: "backup",
        resource_id: done.path,
        details: {
          root: at.store.root,
          name: at.name,
          ...facts,
          ...age,
          ...(at.name !== at.from ? { replaces: at.from } : {}),
          ...(recipients ? { recipient_fingerprints: recipients.map(recipientFingerprint) } : {}),
        },
      });
      if (audit.warning) out.audit_warning = audit.warning;
    }
  }
  if (ws && row && done.sha256 !== undefined) {
    const { age_header_bytes: _b, age_header_sha256: _h, age_payload_sha256: _p, ...kept } = row;
    await appendBackupLog(ws, {
      ...kept,
      created_at: new Date().toISOString(),
      location: done.path,
      sha256: done.sha256,
      size_bytes: done.size_bytes!,
      ...(recipients ? { recipients, ...fingerprints } : {}),
      ...age,
      rekeyed_from: row.sha256,
    });
  }
  return { ...out, ...fingerprints };
}

/** Rekeys one local archive, and records it in the catalogue of `ws` when given. */
export async function rekeyArchive(
  file: string,
  req: RekeyRequest,
  ws?: Workspace,
  opts: { skipDone?: boolean; row?: BackupLogRow } = {},
): Promise<RekeyOutcome> {
  const abs = path.resolve(file);
  const lock = await acquireRekeyLock(abs);
  // Registered before the rekey's own cleanups, so it runs after them: an interrupted rekey
  // (undone, or finished past its point of no return) leaves no lock behind.
  const interrupt = lock && cleanupOnInterrupt("the rekey lock", () => lock.release(), { silent: true });
  try {
    // Read under the lock: a row read before it may predate a rekey that just finished, and a
    // recipient set computed from it would drop what that rekey added.
    const row = ws ? (await newestRows(ws)).get(abs) : opts.row;
    const out = await rekeyArchiveLocked(file, abs, req, ws, row, opts.skipDone ?? false);
    return lock?.tookOver ? { ...out, lock_warning: `rekey lock: ${lock.tookOver}` } : out;
  } finally {
    await interrupt?.release();
    await lock?.release();
  }
}

/** rekeyArchive, for a caller that holds the archive's rekey lock. */
async function rekeyArchiveLocked(
  file: string,
  abs: string,
  req: RekeyRequest,
  ws: Workspace | undefined,
  row: BackupLogRow | undefined,
  skipDone: boolean,
): Promise<RekeyOutcome> {
  // Worked on (and named in messages and the outcome) by the path the caller gave, as every dr
  // command names what the user gave; recorded (catalogue row, audit event) by its absolute path.
  const record = async (done: Done): Promise<RekeyOutcome> => {
    const at = { from: path.basename(abs), name: path.basename(done.path), local: true };
    const recorded = await recordDone(
      { ...done, path: path.resolve(done.path) },
      { ...at, store: new LocalStore(path.dirname(abs)) },
      ws,
      row,
    );
    return { ...recorded, from: file, path: done.path };
  };
  if (abs.endsWith(".enc")) return rekeyEnc(file, req, record);
  // checkNeeds (in rekeyAge) refuses what is not an age archive either.
  return rekeyAge({ file }, req, row, skipDone, record);
}

/** Rekeys the `.age` object `key` of `store` (S3): the header rewritten in front of the same payload. */
export async function rekeyObject(
  store: BackupStore,
  key: string,
  req: RekeyRequest,
  ws?: Workspace,
  opts: { skipDone?: boolean; row?: BackupLogRow } = {},
): Promise<RekeyOutcome> {
  const location = store.describe(key);
  if (!key.endsWith(".age")) {
    throw usage(
      key.endsWith(".enc")
        ? `${location}: a .enc archive is re-encrypted, not rekeyed in place; download it, rekey the copy, upload it`
        : `${location}: not an age archive (.age); a plain archive has no keys to rotate`,
    );
  }
  const row = opts.row ?? (ws ? (await newestRows(ws)).get(location) : undefined);
  return rekeyAge({ file: location, store, key }, req, row, opts.skipDone ?? false, (done) =>
    recordDone(done, { store, from: key, name: key, local: false }, ws, row),
  );
}

/**
 * Rekeys `archives` one after the other, once each has been checked (checkNeeds: a usage error
 * changes nothing). A failure only found part-way (a wrong password, a damaged archive) names the
 * archives already rekeyed, in its line and (`rekeyed`) its --json.
 */
async function rekeyEach(
  archives: { file: string; row: BackupLogRow | undefined; rekey: () => Promise<RekeyOutcome> }[],
  req: RekeyRequest,
): Promise<RekeyOutcome[]> {
  for (const { file, row } of archives) checkNeeds(file, req, row, true);
  const out: RekeyOutcome[] = [];
  for (const { rekey } of archives) {
    try {
      out.push(await rekey());
    } catch (err) {
      const done = out.filter((o) => o.action !== "already-done");
      if (!done.length) throw err;
      const before = `already rekeyed before it: ${done.map((o) => o.path).join(", ")}`;
      if (err instanceof UserError)
        throw new UserError(`${err.message}; ${before}`, err.exitCode, { ...err.details, rekeyed: done });
      throw new Error(`${(err as Error)?.message ?? String(err)}; ${before}`, { cause: err });
    }
  }
  return out;
}

/** `--all`: every catalogued local encrypted archive, newest row each; archives already done are skipped. */
export async function rekeyAll(
  ws: Workspace,
  req: RekeyRequest,
  problems?: BackupLogProblem[],
): Promise<RekeyOutcome[]> {
  const rows = await newestRows(ws, problems);
  const archives = [];
  for (const [location, row] of rows) {
    if (!path.isAbsolute(location) || !/\.(age|enc)$/.test(location)) continue;
    // An .enc converted to age has its .age row now; the .enc row is history.
    if (location.endsWith(".enc") && rows.has(location.replace(/\.enc$/, ".age"))) continue;
    archives.push({
      file: location,
      row,
      rekey: () => rekeyArchive(location, req, ws, { skipDone: true, row }),
    });
  }
  return rekeyEach(archives, req);
}

/**
 * `--all --at LOCATION`: every encrypted backup of a catalogue location (`dr list --at`; on S3 the
 * `.age` ones: a `.enc` object is re-encrypted, not rekeyed), with the
 * workspace's newest row of each for its recipients; archives already done are skipped.
 */
export async function rekeyAllAt(
  ws: Workspace,
  store: BackupStore,
  req: RekeyRequest,
  problems?: BackupLogProblem[],
): Promise<RekeyOutcome[]> {
  const rows = await newestRows(ws, problems);
  const local = store instanceof LocalStore;
  const archives = [];
  for (const { name } of (await listCatalogue(store)).entries) {
    if (!(local ? /\.(age|enc)$/ : /\.age$/).test(name)) continue;
    const row = rows.get(store.describe(name));
    const opts = { skipDone: true, row };
    const file = local ? path.join(store.root, name) : store.describe(name);
    archives.push({
      file,
      row,
      rekey: () => (local ? rekeyArchive(file, req, ws, opts) : rekeyObject(store, name, req, ws, opts)),
    });
  }
  return rekeyEach(archives, req);
}
