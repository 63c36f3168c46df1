/**
 * Recipients and identities, through the age-encryption library (typage): it parses
 * `age1...` (X25519) and `age1pq1...` (ML-KEM-768 + X25519 hybrid) recipients,
 * `AGE-SECRET-KEY-1...` and `AGE-SECRET-KEY-PQ-1...` identities, wraps a file key into their
 * stanzas and unwraps it again. Nothing here implements a primitive. The library (and its
 * post-quantum dependencies) is loaded on first use: the orchestrator and the archiver import
 * this module, and most of their runs never touch a key.
 */
import { createHash } from "node:crypto";
import type { Recipient } from "age-encryption";
import { ExitCode, UserError } from "../../errors/errors.js";
import type { KeyCache } from "../fernet.js";
import { sealHeaderWithRoom } from "./filler.js";
import { AgeFormatError, describeStanzas, encodeStanzas, headerLength, type StanzaLike } from "./header.js";

let library: Promise<typeof import("../../vendor/age.js")> | undefined;
const age = (): Promise<typeof import("../../vendor/age.js")> => (library ??= import("../../vendor/age.js"));

/** None of the identities given opens the header (a wrong key, or a stanza that was altered). */
export class AgeIdentityError extends Error {
  override name = "AgeIdentityError";
  constructor(
    /** How many identities were tried. */
    readonly tried: number,
    /** What the header says of its recipients (describeStanzas). */
    readonly stanzas: string,
  ) {
    super(noIdentityOpens(tried, stanzas));
  }
}

/**
 * The error every command reports when no identity opens an archive (restore, verify, drill,
 * rekey): one message, exit 4. `fingerprints`: the recipients as catalogued, when known.
 */
export function identityFailure(
  label: string,
  err: AgeIdentityError,
  fingerprints?: readonly string[],
): UserError {
  const known = fingerprints?.length ? fingerprints.join(", ") : undefined;
  return new UserError(
    `cannot decrypt ${label}: ${known ? noIdentityOpens(err.tried, known) : err.message}`,
    ExitCode.BAD_PASSWORD,
    { problem: "auth", ...(known ? { recipient_fingerprints: fingerprints } : {}) },
  );
}

/** The wrong-identity message: `recipients` are fingerprints when known, else the stanza counts. */
export function noIdentityOpens(tried: number, recipients: string): string {
  return `none of the ${tried} identities opens this archive; it is encrypted to recipients ${recipients}`;
}

/** A recipient string is not one the library accepts; `recipient` names it. */
export class BadRecipientError extends Error {
  override name = "BadRecipientError";
  constructor(readonly recipient: string) {
    super(`not an age recipient: ${recipient}`);
  }
}

/** A short, stable name for a recipient (its sha256, 16 hex digits) for catalogues and messages. */
export function recipientFingerprint(recipient: string): string {
  return `SHA256:${createHash("sha256").update(recipient).digest("hex").slice(0, 16)}`;
}

export function isPostQuantum(recipient: string): boolean {
  return recipient.startsWith("age1pq1");
}

/**
 * The library's recipient objects for `recipients` (validated: a malformed one throws
 * BadRecipientError naming it). Why reach into the Encrypter: the library exports only the
 * Encrypter, whose encrypt() picks its own random file key, and a header rewrite (rekey) must
 * wrap the archive's existing file key; `recipients` is its declared member holding exactly
 * the parsed objects.
 */
async function recipientObjects(recipients: readonly string[]): Promise<Recipient[]> {
  const { Encrypter } = await age();
  const objects: Recipient[] = [];
  for (const r of recipients) {
    const e = new Encrypter();
    try {
      e.addRecipient(r);
    } catch {
      throw new BadRecipientError(r);
    }
    const parsed = (e as unknown as { recipients: Recipient[] }).recipients;
    if (!Array.isArray(parsed) || parsed.length !== 1 || typeof parsed[0]?.wrapFileKey !== "function") {
      throw new Error("age-encryption: Encrypter no longer holds parsed recipients (library changed)");
    }
    objects.push(parsed[0]);
  }
  return objects;
}

/** Throws BadRecipientError for the first recipient the library does not accept. */
export async function checkRecipients(recipients: readonly string[]): Promise<void> {
  if (recipients.length === 0) throw new Error("no recipients");
  await recipientObjects(recipients);
}

/** The stanza lines that give `fileKey` to every recipient. */
export async function wrapFileKey(fileKey: Uint8Array, recipients: readonly string[]): Promise<string> {
  const stanzas: StanzaLike[] = [];
  for (const r of await recipientObjects(recipients)) stanzas.push(...(await r.wrapFileKey(fileKey)));
  return encodeStanzas(stanzas);
}

/** The header giving `fileKey` to `recipients`, with room for later recipients (`filler.ts`). */
export async function makeHeader(fileKey: Uint8Array, recipients: readonly string[]): Promise<Buffer> {
  return sealHeaderWithRoom(fileKey, await wrapFileKey(fileKey, recipients));
}

/** Whether `identity` is an identity line the library accepts. */
export async function isIdentity(identity: string): Promise<boolean> {
  const { Decrypter } = await age();
  try {
    new Decrypter().addIdentity(identity);
    return /^AGE-SECRET-KEY-(PQ-)?1/.test(identity);
  } catch {
    return false;
  }
}

/**
 * The file key of a header, unwrapped by one of `identities`; checks the header MAC.
 * AgeIdentityError: none matched. AgeFormatError: malformed header, or a MAC that does not match
 * (the header was altered after it was written).
 */
export async function unwrapFileKey(header: Buffer, identities: readonly string[]): Promise<Uint8Array> {
  const { Decrypter } = await age();
  const d = new Decrypter();
  for (const id of identities) d.addIdentity(id);
  try {
    return await d.decryptHeader(header);
  } catch (err) {
    const msg = (err as Error).message;
    if (/no identity matched/.test(msg)) {
      throw new AgeIdentityError(identities.length, describeStanzas(header));
    }
    if (/invalid header HMAC/.test(msg))
      throw new AgeFormatError("the header was altered: its MAC does not match");
    throw new AgeFormatError(`the header is malformed (${msg})`);
  }
}

const cacheKeyOf = (header: Buffer, identities: readonly string[]): string => {
  const h = createHash("sha256").update("age\0");
  for (const id of identities) h.update(id).update("\0");
  return h.update(header).digest("hex");
};

/**
 * Starts unwrapping the file key of the age file that begins with `head` (when its whole header
 * is there) into `cache`: loading the library and the unwrap then overlap what the caller does
 * before its first read (locks, fsyncs, the staging worker's start) instead of following it. A
 * failure is kept for unwrapFileKeyCached to report, as unwrapping then would.
 */
export function startFileKeyUnwrap(head: Buffer, identities: readonly string[], cache: KeyCache): void {
  let length: number;
  try {
    length = headerLength(head);
  } catch {
    return; // not an age file: the read says so
  }
  if (length < 0) return;
  const header = Buffer.from(head.subarray(0, length));
  const id = cacheKeyOf(header, identities);
  if (cache.has(id)) return;
  const pending = unwrapFileKey(header, identities).then((key) => Buffer.from(key));
  pending.catch(() => {}); // reported to whoever awaits it, never as unhandled
  cache.set(id, pending);
}

/** unwrapFileKey, or the unwrap that startFileKeyUnwrap started for this header and identities. */
export async function unwrapFileKeyCached(
  header: Buffer,
  identities: readonly string[],
  cache: KeyCache | undefined,
): Promise<Uint8Array> {
  return cache?.get(cacheKeyOf(header, identities)) ?? unwrapFileKey(header, identities);
}

export async function generateIdentityLine(
  postQuantum: boolean,
): Promise<{ identity: string; recipient: string }> {
  const { generateHybridIdentity, generateX25519Identity, identityToRecipient } = await age();
  const identity = postQuantum ? await generateHybridIdentity() : await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

export async function recipientOf(identity: string): Promise<string> {
  return (await age()).identityToRecipient(identity);
}
