/**
 * The filler stanza: room reserved in an age header so a later rekey can rewrite the header in
 * place, without copying the payload.
 *
 *   -> bernstein.filler <1-3 "x">
 *   <base64 of zero bytes, 64 columns, last line shorter>
 *
 * Why it is safe: age identities ignore stanzas of a type they do not know (age v1 spec, each
 * native identity "MUST ignore any stanza that does not have <its type> as the first argument"),
 * and the filler sits inside the header MAC like any other stanza. Its argument and body
 * lengths are chosen so the stanza is exactly the number of bytes asked for (any n ≥
 * MIN_FILLER_BYTES): unpadded base64 cannot give every length, the argument makes up the rest.
 */
import { FILLER_TYPE, sealHeader } from "./header.js";

const PREFIX = `-> ${FILLER_TYPE} `;
/** "-> bernstein.filler x\n" plus one empty body line. */
export const MIN_FILLER_BYTES = PREFIX.length + 2 + 1;
/**
 * Room a new header reserves: at least HEADER_ROOM_BYTES beyond its natural size, rounded up to a
 * multiple of HEADER_BLOCK_BYTES. A header of one X25519 recipient becomes 4 KiB, with room for
 * 39 more X25519 stanzas (98 bytes each) or 2 hybrid ML-KEM-768+X25519 ones (~1.6 kB each).
 */
export const HEADER_ROOM_BYTES = 2048;
export const HEADER_BLOCK_BYTES = 4096;

const COLUMNS = 64;
const BYTES_PER_LINE = 48;
const unpaddedBase64Length = (bytes: number): number => Math.ceil((bytes * 4) / 3);

/** The lines of a zero-filled body of `bodyChars` encoded characters (newlines included), or undefined. */
function zeroBody(bodyChars: number): string | undefined {
  if (bodyChars < 1) return undefined;
  const fullLines = Math.floor((bodyChars - 1) / (COLUMNS + 1));
  const lastChars = bodyChars - 1 - fullLines * (COLUMNS + 1);
  for (let rest = 0; rest < BYTES_PER_LINE; rest++) {
    if (unpaddedBase64Length(rest) !== lastChars) continue;
    const full = `${"A".repeat(COLUMNS)}\n`.repeat(fullLines);
    return `${full}${Buffer.alloc(rest).toString("base64").replace(/=+$/, "")}\n`;
  }
  return undefined;
}

/** A filler stanza of exactly `bytes` bytes (bytes ≥ MIN_FILLER_BYTES). */
export function fillerStanza(bytes: number): string {
  for (let argChars = 1; argChars <= 3; argChars++) {
    const body = zeroBody(bytes - PREFIX.length - argChars - 1);
    if (body !== undefined) return `${PREFIX}${"x".repeat(argChars)}\n${body}`;
  }
  throw new Error(`no filler stanza of ${bytes} bytes (the least is ${MIN_FILLER_BYTES})`);
}

/** Stanza lines (as `stanzaText` gives them) without any filler stanza. */
export function withoutFiller(stanzaLines: string): string {
  const lines = stanzaLines.split("\n");
  const kept: string[] = [];
  let inFiller = false;
  for (const line of lines.slice(0, -1)) {
    if (line.startsWith("-> ")) inFiller = line.startsWith(PREFIX);
    if (!inFiller) kept.push(line);
  }
  return kept.length ? `${kept.join("\n")}\n` : "";
}

/** The padded size of a new header whose natural size (stanzas and MAC, no filler) is `natural`. */
export function reservedHeaderBytes(natural: number): number {
  return Math.ceil((natural + HEADER_ROOM_BYTES) / HEADER_BLOCK_BYTES) * HEADER_BLOCK_BYTES;
}

/**
 * The header sealing `stanzaLines` (no filler among them) padded to exactly `totalBytes`, or
 * undefined when it does not fit (the MAC line has a fixed length, so only the filler varies).
 */
export function sealHeaderPadded(
  fileKey: Uint8Array,
  stanzaLines: string,
  totalBytes: number,
): Buffer | undefined {
  const natural = sealHeader(fileKey, stanzaLines);
  const room = totalBytes - natural.length;
  if (room === 0) return natural;
  if (room < MIN_FILLER_BYTES) return undefined;
  return sealHeader(fileKey, stanzaLines + fillerStanza(room));
}

/** A new header with room reserved for later recipients (see HEADER_ROOM_BYTES). */
export function sealHeaderWithRoom(fileKey: Uint8Array, stanzaLines: string): Buffer {
  const natural = sealHeader(fileKey, stanzaLines).length;
  return sealHeaderPadded(fileKey, stanzaLines, reservedHeaderBytes(natural))!;
}
