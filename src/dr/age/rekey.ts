/**
 * Rotating the recipients of an age archive without touching its payload: the file key is
 * unwrapped with an identity that opens the archive, wrapped again for the new recipients,
 * and the new header is followed by the old payload bytes (nonce and STREAM) as they are.
 *
 * Locally, two ways, both leaving the old archive or the new one after a crash, never a mix:
 * - in place, when the new header fits in the old one's length (padded to exactly that length
 *   with a filler stanza, `filler.ts`): only the header bytes are written, under a journal
 *   (`header-journal.ts`), so the time does not depend on the archive's size;
 * - otherwise a copy: the new header and the payload are written beside the old file, fsynced,
 *   checked, then renamed over it. The new header reserves room again, so the next rekey fits.
 *
 * What the archive's record needs afterwards (split-hash.ts): the new header's sha256, and the
 * payload's, which a rekey does not change. When the record's header hash and size are those of
 * the archive as found, its payload hash is carried over and no payload byte is read; otherwise
 * (a record from before split hashes, or none) the payload is read once, before anything
 * changes, and must match the recorded payload hash when there is one.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { fsyncDir, fsyncHandle, tempPathFor, writeAllAt } from "../../workspace/durable.js";
import { ioError } from "../../errors/errors.js";
import { cleanupUntilNoReturn, type PointOfNoReturn } from "../../workspace/interrupt.js";
import { crashPoint } from "../../state/decisions.js";
import { sealHeaderPadded, sealHeaderWithRoom, withoutFiller } from "./filler.js";
import {
  journalPath,
  overwriteHeader,
  readPrefix,
  removeHeaderJournal,
  rollForwardHeader,
  writeHeaderJournal,
} from "./header-journal.js";
import { AgeFormatError, headerLength, sealHeader, stanzaText } from "./header.js";
import { recipientFingerprint, unwrapFileKey, wrapFileKey } from "./keys.js";
import { withHeader, type AgeSplitHashes } from "./split-hash.js";
import { shown } from "../../workspace/shown-path.js";

export interface RekeyPlan {
  /** Identities of which at least one opens the archive. */
  identities: readonly string[];
  /** Recipients to wrap the file key to. */
  recipients: readonly string[];
  /** Keep the old stanzas (adding recipients) instead of replacing them (a new full set). */
  keepExisting: boolean;
  /** Runs once the archive is known to open, just before its first byte changes. */
  beforeChange?: () => Promise<void>;
  /** The archive as its record states it, when the record has split hashes. */
  recorded?: { split: AgeSplitHashes; size_bytes?: number };
}

export interface RekeyResult {
  /** Whether only the header bytes were written (else the archive was copied). */
  in_place: boolean;
  header_bytes_before: number;
  header_bytes_after: number;
  payload_bytes: number;
  /** sha256 of the rewritten archive, when the payload was read (copied, or no split record). */
  sha256?: string;
  size_bytes: number;
  /** The new header's hashes with the payload's (carried over or read). */
  age: AgeSplitHashes;
  /** Whether the payload was read (no record to carry its sha256 over from). */
  payload_read: boolean;
}

/** The header of a local age file (read in 64 KiB steps, never past MAX_HEADER_BYTES). */
export async function readAgeHeader(file: string): Promise<{ header: Buffer; size: number }> {
  const fh = await open(file, "r");
  try {
    const size = (await fh.stat()).size;
    let bytes = Buffer.alloc(0);
    for (;;) {
      const buf = Buffer.alloc(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes.length);
      if (bytesRead === 0) throw new AgeFormatError("the age file is truncated inside its header");
      bytes = Buffer.concat([bytes, buf.subarray(0, bytesRead)]);
      const len = headerLength(bytes);
      if (len >= 0) return { header: bytes.subarray(0, len), size };
    }
  } finally {
    await fh.close();
  }
}

/**
 * The new header for `header` under `plan`, and the file key that both share: padded to the old
 * header's length when it fits (`inPlace`), else with fresh room reserved.
 */
export async function rekeyHeader(
  header: Buffer,
  plan: RekeyPlan,
): Promise<{ header: Buffer; fileKey: Uint8Array; inPlace: boolean }> {
  const fileKey = await unwrapFileKey(header, plan.identities);
  const kept = plan.keepExisting ? withoutFiller(stanzaText(header)) : "";
  const added = plan.recipients.length ? await wrapFileKey(fileKey, plan.recipients) : "";
  if (!kept && !added) throw new Error("a rekey must leave at least one recipient");
  const padded = sealHeaderPadded(fileKey, kept + added, header.length);
  if (padded) return { header: padded, fileKey, inPlace: true };
  return { header: sealHeaderWithRoom(fileKey, kept + added), fileKey, inPlace: false };
}

/**
 * Rewrites the header of the local age archive `file`: in place when it fits, else by a copy.
 * `record` (the sidecar, the catalogue row, the audit event) runs right after, as part of the same
 * rekey: past its point of no return (the header journal written, or the copy renamed over the
 * archive) the new keys alone may open it, so an interrupt waits for the rest and says so.
 */
export async function rekeyAgeFile(file: string, plan: RekeyPlan): Promise<RekeyResult>;
export async function rekeyAgeFile<T extends { audit_warning?: string }>(
  file: string,
  plan: RekeyPlan,
  record: (r: RekeyResult) => Promise<T>,
): Promise<T>;
export async function rekeyAgeFile<T extends { audit_warning?: string }>(
  file: string,
  plan: RekeyPlan,
  record: (r: RekeyResult) => Promise<T> = async (r) => r as unknown as T,
): Promise<T> {
  await rollForwardHeader(file);
  const { header: oldHeader, size } = await readAgeHeader(file);
  const { header, fileKey, inPlace } = await rekeyHeader(oldHeader, plan);
  const carried = carriedPayload(oldHeader, size, plan.recorded);
  const read =
    inPlace && !carried
      ? await payloadPass(file, oldHeader.length, header, plan.recorded?.split.age_payload_sha256)
      : undefined;
  // The copy changes nothing until its rename: a copy that fails (a full disk) keeps the sidecar.
  if (inPlace) await plan.beforeChange?.();
  const payloadBytes = size - oldHeader.length;
  const result = {
    header_bytes_before: oldHeader.length,
    header_bytes_after: header.length,
    payload_bytes: payloadBytes,
    size_bytes: header.length + payloadBytes,
  };
  const added = `recipients ${plan.recipients.map(recipientFingerprint).join(", ")}`;
  const now = `${shown(file)} is rekeyed: ${
    plan.keepExisting
      ? `the identities of its old recipients and of ${added} open it`
      : `only the identities of ${added} open it`
  }`;
  const cross = (cleanup: PointOfNoReturn, point: string, steps: (passed: () => void) => Promise<T>) =>
    cleanup.cross(point, steps, now, (r) => r.audit_warning);
  if (!inPlace) {
    return copyWithHeader(file, header, oldHeader.length, fileKey, plan, cross, (copied) =>
      record({
        ...result,
        in_place: false,
        sha256: copied.sha256,
        age: withHeader(header, copied.payload),
        payload_read: true,
      }),
    );
  }
  // Registered and crossed in one tick: nothing to remove before the journal is written.
  const cleanup = cleanupUntilNoReturn(
    "rekey",
    shown(journalPath(file)),
    () =>
      `the rekey stopped before its point of no return (the header journal): the old keys still open ${shown(file)}`,
  );
  try {
    return await cross(cleanup, "the header journal", async (passed) => {
      await writeHeaderJournal(file, { size, oldHeader, newHeader: header });
      passed();
      crashPoint("dr_rekey", "after_journal");
      await overwriteHeader(file, header, size);
      await checkInPlace(file, header, fileKey);
      crashPoint("dr_rekey", "after_header");
      await removeHeaderJournal(file);
      return record({
        ...result,
        in_place: true,
        ...(read ? { sha256: read.sha256 } : {}),
        age: withHeader(header, carried ?? read!.payload),
        payload_read: read !== undefined,
      });
    });
  } finally {
    await cleanup.release();
  }
}

/** The recorded payload sha256, when the record describes this very header and size. */
function carriedPayload(
  oldHeader: Buffer,
  size: number,
  recorded: RekeyPlan["recorded"],
): string | undefined {
  if (!recorded) return undefined;
  const same =
    withHeader(oldHeader, recorded.split.age_payload_sha256).age_header_sha256 ===
      recorded.split.age_header_sha256 &&
    oldHeader.length === recorded.split.age_header_bytes &&
    (recorded.size_bytes === undefined || recorded.size_bytes === size);
  return same ? recorded.split.age_payload_sha256 : undefined;
}

/** A payload that is not the recorded one: the archive is damaged, and nothing is changed. */
function payloadDamaged(file: string, actual: string, recorded: string): AgeFormatError {
  return new AgeFormatError(
    `the payload of ${file} has sha256 ${actual}, recorded ${recorded}: it is damaged; nothing changed`,
  );
}

/**
 * One read of the payload (from `from` on): its sha256, and the sha256 the archive will have
 * with `newHeader` in front. It must be `recordedPayload` when one was recorded.
 */
async function payloadPass(
  file: string,
  from: number,
  newHeader: Buffer,
  recordedPayload: string | undefined,
): Promise<{ payload: string; sha256: string }> {
  const payload = createHash("sha256");
  const whole = createHash("sha256").update(newHeader);
  for await (const chunk of createReadStream(file, { start: from, highWaterMark: 1 << 20 })) {
    payload.update(chunk as Buffer);
    whole.update(chunk as Buffer);
  }
  const out = { payload: payload.digest("hex"), sha256: whole.digest("hex") };
  if (recordedPayload !== undefined && out.payload !== recordedPayload)
    throw payloadDamaged(file, out.payload, recordedPayload);
  return out;
}

/**
 * The header read back from disk is the one written and is sealed by the archive's file key (its
 * MAC). Not checked by unwrapping: the identity that opened the archive may be one just removed.
 */
async function checkInPlace(file: string, header: Buffer, fileKey: Uint8Array): Promise<void> {
  const back = await readPrefix(file, header.length);
  if (!back.equals(header) || !sealHeader(fileKey, stanzaText(back)).equals(back))
    throw new Error(`the rewritten header of ${file} does not read back as written`);
}

/**
 * `header` and the payload of `file` (after `oldHeaderBytes`) into a temp file renamed over it;
 * then `record` with its sha256 and its payload's (which must be the recorded one, when there is one).
 */
async function copyWithHeader<T>(
  file: string,
  header: Buffer,
  oldHeaderBytes: number,
  fileKey: Uint8Array,
  plan: Pick<RekeyPlan, "recorded" | "beforeChange">,
  cross: (cleanup: PointOfNoReturn, point: string, steps: (passed: () => void) => Promise<T>) => Promise<T>,
  record: (copied: { sha256: string; payload: string }) => Promise<T>,
): Promise<T> {
  const size = (await stat(file)).size;
  const expected = header.length + size - oldHeaderBytes;
  const tmp = tempPathFor(file);
  const cleanup = cleanupUntilNoReturn("rekey", shown(tmp), () => unlink(tmp).catch(() => {}));
  try {
    const mode = (await stat(file)).mode & 0o777;
    const hash = createHash("sha256").update(header);
    const payload = createHash("sha256");
    const out = await open(tmp, "wx", mode);
    try {
      // A full disk (or file-size limit) is the copy's: the archive is only read.
      const put = (data: Buffer, at: number) =>
        writeAllAt(out, data, at).catch((err: unknown) => {
          throw ioError(`cannot write the rekeyed copy of ${shown(file)}`, err) ?? err;
        });
      await put(header, 0);
      let at = header.length;
      for await (const chunk of createReadStream(file, { start: oldHeaderBytes, highWaterMark: 1 << 20 })) {
        hash.update(chunk as Buffer);
        payload.update(chunk as Buffer);
        await put(chunk as Buffer, at);
        at += (chunk as Buffer).length;
      }
      if (at !== expected) throw new Error(`${file} changed while it was rekeyed`);
      await fsyncHandle(out);
    } finally {
      await out.close();
    }
    const payloadSha = payload.digest("hex");
    const recordedPayload = plan.recorded?.split.age_payload_sha256;
    if (recordedPayload !== undefined && payloadSha !== recordedPayload)
      throw payloadDamaged(file, payloadSha, recordedPayload);
    await checkRewritten(tmp, fileKey, expected);
    await plan.beforeChange?.();
    return await cross(cleanup, "the rename", async (passed) => {
      await rename(tmp, file);
      passed();
      crashPoint("dr_rekey", "after_rename");
      await fsyncDir(path.dirname(file));
      return record({ sha256: hash.digest("hex"), payload: payloadSha });
    });
  } catch (err) {
    if (!cleanup.passed) await unlink(tmp).catch(() => {});
    throw err;
  } finally {
    await cleanup.release();
  }
}

/** The rewritten file, read back: a header sealed by the same file key, and every payload byte. */
async function checkRewritten(file: string, fileKey: Uint8Array, expectedSize: number): Promise<void> {
  const { header, size } = await readAgeHeader(file);
  if (!sealHeader(fileKey, stanzaText(header)).equals(header) || size !== expectedSize) {
    throw new Error(`the rewritten archive ${file} does not read back as written`);
  }
}
