/**
 * The age v1 header (https://age-encryption.org/v1): text lines, binary-safe.
 *
 *   age-encryption.org/v1
 *   -> <type> <args...>          one stanza per recipient: arguments, then the wrapped file key
 *   <base64, 64 columns, last line shorter (empty when the body is a multiple of 48 bytes)>
 *   --- <base64 of HMAC-SHA256(HKDF-SHA256(file key, "", "header"), everything up to "---")>
 *
 * then the 16-byte payload nonce and the STREAM payload (`stream.ts`). The stanzas themselves
 * (X25519, ML-KEM-768+X25519) are made and opened by the age-encryption library (`keys.ts`);
 * this file only frames them and computes the header MAC with node:crypto.
 */
import { createHmac, hkdfSync } from "node:crypto";

export const AGE_MAGIC = "age-encryption.org/v1\n";
/** A header larger than this is not one of ours (a hybrid stanza is ~1.6 kB). */
export const MAX_HEADER_BYTES = 1024 * 1024;
/** The type of the stanza that pads a header (`filler.ts`); no identity opens it. */
export const FILLER_TYPE = "bernstein.filler";
const MAC_LINE_START = Buffer.from("\n--- ", "latin1");

/** The header is malformed, altered or truncated (or this is not an age file at all). */
export class AgeFormatError extends Error {
  override name = "AgeFormatError";
}

/** A stanza as the library represents it. */
export interface StanzaLike {
  readonly args: string[];
  readonly body: Uint8Array;
}

export function looksLikeAge(head: Buffer): boolean {
  return head.subarray(0, AGE_MAGIC.length).toString("latin1") === AGE_MAGIC.slice(0, head.length);
}

/**
 * The length of the header at the start of `bytes` (through the MAC line's newline), or -1
 * when more bytes are needed. Throws once it can be sure this is not an age header.
 */
export function headerLength(bytes: Buffer): number {
  if (!looksLikeAge(bytes)) throw new AgeFormatError("not an age file (no age-encryption.org/v1 line)");
  const mac = bytes.indexOf(MAC_LINE_START);
  const end = mac < 0 ? -1 : bytes.indexOf(0x0a, mac + MAC_LINE_START.length);
  if (end < 0) {
    if (bytes.length > MAX_HEADER_BYTES) throw new AgeFormatError("age header too large or truncated");
    return -1;
  }
  return end + 1;
}

/** The stanza lines of a header (between the version line and the MAC line), as text. */
export function stanzaText(header: Buffer): string {
  const text = header.toString("latin1");
  return text.slice(AGE_MAGIC.length, text.lastIndexOf("\n--- ") + 1);
}

/**
 * Stanza types in a header, counted: "2 X25519 stanzas, 1 mlkem768x25519 stanza". What a header
 * says of its recipients: an X25519 stanza names none (only an ephemeral share).
 */
export function describeStanzas(header: Buffer): string {
  const counts = new Map<string, number>();
  for (const line of stanzaText(header).split("\n")) {
    if (!line.startsWith("-> ")) continue;
    const type = line.slice(3).split(" ")[0]!;
    if (type === FILLER_TYPE) continue;
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return [...counts].map(([t, n]) => `${n} ${t} stanza${n === 1 ? "" : "s"}`).join(", ");
}

export function encodeStanzas(stanzas: readonly StanzaLike[]): string {
  let out = "";
  for (const s of stanzas) {
    out += `-> ${s.args.join(" ")}\n`;
    const body = Buffer.from(s.body);
    for (let i = 0; i < body.length; i += 48)
      out += `${body
        .subarray(i, i + 48)
        .toString("base64")
        .replace(/=+$/, "")}\n`;
    if (body.length % 48 === 0) out += "\n";
  }
  return out;
}

/** A complete header for `stanzaLines` (as `encodeStanzas` or `stanzaText` give them). */
export function sealHeader(fileKey: Uint8Array, stanzaLines: string): Buffer {
  const noMac = Buffer.from(`${AGE_MAGIC}${stanzaLines}---`, "latin1");
  const key = Buffer.from(hkdfSync("sha256", fileKey, Buffer.alloc(0), "header", 32));
  const mac = createHmac("sha256", key).update(noMac).digest();
  return Buffer.concat([noMac, Buffer.from(` ${mac.toString("base64").replace(/=+$/, "")}\n`, "latin1")]);
}
