/**
 * Encryption of a WAL archive (docs/formats.md "Archive encryption"). Each generation has one
 * key, set up when the generation starts and recorded in its record:
 *   - a password: PBKDF2-HMAC-SHA256 over the salt and iterations the record states (run once per
 *     generation, never per segment), plus a key check so a wrong password is refused before
 *     anything is read or written;
 *   - age recipients: a random 16-byte file key wrapped in a standard age header the record holds.
 * Segments carry no key material: with a password each is one Fernet token under the generation
 * key; with recipients each is `nonce(16) || age STREAM payload` under the file key, so the
 * record's header followed by a segment is a standard age file. Snapshots are ordinary encrypted
 * `dr backup` archives (`.tar.gz.enc`, `.tar.gz.age`).
 *
 * Every reader (restore, check, list) unlocks a generation with `unlockGeneration`; segments are
 * sealed and opened through segment-codec.ts, which gzips before sealing and inflates after.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { ExitCode, UserError } from "../errors/errors.js";
import { AgeFormatError, sealHeader, stanzaText } from "../dr/age/header.js";
import { AgeIdentityError, makeHeader, recipientFingerprint, unwrapFileKey } from "../dr/age/keys.js";
import { PAYLOAD_NONCE_BYTES, StreamOpener, StreamSealer } from "../dr/age/stream.js";
import { FernetDecryptor, FernetEncryptor, PBKDF2_ITERATIONS, SALT_BYTES, deriveKey } from "../dr/fernet.js";

/** What a generation record says about its encryption (absent: a plain generation). */
export interface GenerationEncryption {
  scheme: "fernet" | "age";
  /** fernet: how the key is derived from the password. */
  kdf?: { name: "pbkdf2-hmac-sha256"; salt: string; iterations: number };
  /** fernet: hex HMAC-SHA256(key, KEY_CHECK_LABEL): tells a wrong password without a segment. */
  key_check?: string;
  /** age: base64 of the age header that wraps the generation's file key. */
  age_header?: string;
  /** age: fingerprints of the recipients (sha256 of the recipient, as the backup catalogue). */
  recipients?: string[];
}

/** The key of one generation, unlocked. */
export interface SegmentKey {
  scheme: "fernet" | "age";
  /** fernet: the 32-byte Fernet key; age: the 16-byte file key. */
  key: Buffer;
}

/** The keys a writer encrypts with (recipients win over a password, as in `dr backup`). */
export interface WriteKeys {
  password?: string;
  recipients?: readonly string[];
}

/** The keys a reader may hold. */
export interface ReadKeys {
  password?: string;
  identities?: readonly string[];
}

const KEY_CHECK_LABEL = "bernstein-archive key check v1";

const keyCheck = (key: Buffer): string => createHmac("sha256", key).update(KEY_CHECK_LABEL).digest("hex");

/** The scheme a writer's keys ask for (undefined: plain). */
export function schemeOf(keys: WriteKeys): SegmentKey["scheme"] | undefined {
  if (keys.recipients?.length) return "age";
  return keys.password !== undefined ? "fernet" : undefined;
}

/** A new generation's key and what its record must hold; the only PBKDF2 of the generation. */
export async function newGenerationKey(
  keys: WriteKeys,
  iterations = PBKDF2_ITERATIONS,
): Promise<{ key: SegmentKey; record: GenerationEncryption } | undefined> {
  if (keys.recipients?.length) {
    const fileKey = randomBytes(16);
    const header = await makeHeader(fileKey, keys.recipients);
    return {
      key: { scheme: "age", key: fileKey },
      record: {
        scheme: "age",
        age_header: header.toString("base64"),
        recipients: keys.recipients.map(recipientFingerprint),
      },
    };
  }
  if (keys.password === undefined) return undefined;
  const salt = randomBytes(SALT_BYTES);
  const key = await deriveKey(keys.password, salt, iterations);
  return {
    key: { scheme: "fernet", key },
    record: {
      scheme: "fernet",
      kdf: { name: "pbkdf2-hmac-sha256", salt: salt.toString("base64"), iterations },
      key_check: keyCheck(key),
    },
  };
}

/**
 * Whether `fileKey` is the key an age generation's header wraps (its MAC is keyed by it): how
 * an archiver that writes to recipients, and so cannot unwrap, recognises its own key.
 */
export function fileKeyOpens(enc: GenerationEncryption, fileKey: Buffer): boolean {
  if (enc.scheme !== "age" || !enc.age_header) return false;
  const header = Buffer.from(enc.age_header, "base64");
  try {
    return sealHeader(fileKey, stanzaText(header)).equals(header);
  } catch {
    return false;
  }
}

/** How an encrypted generation is sealed, and what opens it. */
export const KEY_NEEDED: Record<GenerationEncryption["scheme"], string> = {
  fernet: "encrypted with a password: give --password-file (or BERNSTEIN_DR_PASSWORD)",
  age: "encrypted to age recipients: give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE)",
};

/**
 * The key of `generation` from what the reader holds: undefined for a plain generation; exit 2
 * when the generation is encrypted and the reader holds no key of its kind; exit 4 when the
 * password or the identities do not open it. Nothing is read but the record.
 */
export async function unlockGeneration(
  generation: string,
  enc: GenerationEncryption | undefined,
  keys: ReadKeys,
): Promise<SegmentKey | undefined> {
  if (!enc) return undefined;
  if (enc.scheme === "fernet") {
    if (keys.password === undefined)
      throw new UserError(`archive generation ${generation} is ${KEY_NEEDED.fernet}`, ExitCode.USAGE);
    const kdf = enc.kdf!;
    const key = await deriveKey(keys.password, Buffer.from(kdf.salt, "base64"), kdf.iterations);
    const expected = Buffer.from(enc.key_check ?? "", "hex");
    const got = Buffer.from(keyCheck(key), "hex");
    if (expected.length !== got.length || !timingSafeEqual(expected, got))
      throw new UserError(
        `wrong password: it does not open archive generation ${generation}`,
        ExitCode.BAD_PASSWORD,
      );
    return { scheme: "fernet", key };
  }
  if (!keys.identities?.length)
    throw new UserError(`archive generation ${generation} is ${KEY_NEEDED.age}`, ExitCode.USAGE);
  try {
    const fileKey = await unwrapFileKey(Buffer.from(enc.age_header ?? "", "base64"), keys.identities);
    return { scheme: "age", key: Buffer.from(fileKey) };
  } catch (err) {
    if (err instanceof AgeIdentityError)
      throw new UserError(`archive generation ${generation}: ${err.message}`, ExitCode.BAD_PASSWORD);
    if (err instanceof AgeFormatError)
      throw new UserError(`archive generation ${generation}: ${err.message}`, ExitCode.CORRUPT);
    throw err;
  }
}

const SEGMENT_NONCE_LABEL = "bernstein-archive segment nonce v1";
// One age STREAM chunk; a Fernet token is no dearer per byte in slices this size than whole.
const SEAL_SLICE_BYTES = 64 * 1024;

/** What fixes a segment's sealing besides its key: its name, its plaintext, a time of its own. */
export interface SealedAs {
  name: string;
  /** Hex sha256 of the plaintext. */
  plainSha256: string;
  /** Epoch ms the Fernet token states (age has none): the segment's `last_time`, which its plaintext fixes. */
  timeMs: number;
}

/**
 * A segment's stored bytes (the shipper's and compaction's alike): its plaintext sealed under the
 * generation key with a nonce (the Fernet IV, the age payload nonce) derived from the key, the
 * segment's name and its plaintext's hash, and the Fernet timestamp from `as.timeMs`. Whoever
 * seals the same plaintext under the same name (an archiver restarted after a put it never saw
 * answered, a late put of a SIGKILLed one, two compactions of the same pieces) then stores the
 * same bytes, as for a plain archive, so writes cannot interleave into bytes that do not match
 * the index. Distinct plaintexts still get distinct nonces; equal ones reveal only that.
 */
export async function sealSegment(k: SegmentKey, plain: readonly Buffer[], as: SealedAs): Promise<Buffer> {
  const nonce = createHmac("sha256", k.key)
    .update(`${SEGMENT_NONCE_LABEL}\0${as.name}\0`)
    .update(Buffer.from(as.plainSha256, "hex"))
    .digest()
    .subarray(0, PAYLOAD_NONCE_BYTES);
  // No salt before a Fernet token: the key is the generation's, its salt is in the record.
  const sealer =
    k.scheme === "fernet"
      ? new FernetEncryptor(k.key, Buffer.alloc(0), Math.floor(as.timeMs / 1000), nonce)
      : new StreamSealer(k.key, nonce);
  const out: Buffer[] = k.scheme === "age" ? [nonce] : [];
  let sliced = false;
  // In slices with a turn of the event loop between them: the archiver ships beside a merge.
  for (const part of plain)
    for (let at = 0; at < part.length; at += SEAL_SLICE_BYTES) {
      if (sliced) await new Promise<void>((resolve) => setImmediate(resolve));
      sliced = true;
      const sealed = sealer.update(part.subarray(at, at + SEAL_SLICE_BYTES));
      out.push(...(Array.isArray(sealed) ? sealed : [sealed]));
    }
  out.push(sealer.final());
  return Buffer.concat(out);
}

/** A segment's plaintext; throws when it does not authenticate under the generation's key. */
export async function openSegment(k: SegmentKey, stored: Buffer): Promise<Buffer> {
  if (k.scheme === "fernet") {
    const dec = FernetDecryptor.withKey(k.key);
    const head = await dec.update(stored);
    return Buffer.concat([head, dec.final()]);
  }
  if (stored.length < PAYLOAD_NONCE_BYTES) throw new Error("shorter than its nonce");
  const opener = new StreamOpener(k.key, stored.subarray(0, PAYLOAD_NONCE_BYTES));
  return Buffer.concat([...opener.update(stored.subarray(PAYLOAD_NONCE_BYTES)), opener.final()]);
}
