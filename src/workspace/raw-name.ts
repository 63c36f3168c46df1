/**
 * File names as bytes, carried in strings the way Python carries them ("surrogateescape", PEP
 * 383): a byte that is not part of valid UTF-8 becomes the lone surrogate U+DC00 + byte (U+DC80
 * to U+DCFF), everything else is the text it encodes. A name that is not UTF-8 is then a string
 * like any other (compared, sorted, written to JSON as `\udce9`, as Python's json.dumps writes
 * it), and turns back into its exact bytes where it meets the file system or an archive header.
 * This is the one mapping between the two; a Node API given such a string would write U+FFFD.
 */
import { isUtf8 } from "node:buffer";
import path from "node:path";

/** A lone surrogate (one not in a high-low pair): only an escaped byte puts one in a name. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether `name` holds an escaped byte (then only nameToBytes gives its bytes). */
export const hasEscapedBytes = (name: string): boolean => LONE_SURROGATE.test(name);

const cont = (b: number | undefined): boolean => b !== undefined && (b & 0xc0) === 0x80;

/**
 * The length of the valid UTF-8 sequence at `i`, 0 when there is none. Valid as Python's strict
 * decoder takes it: no overlong forms, no encoded surrogates, nothing above U+10FFFF.
 */
function sequenceAt(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const b1 = b[i + 1];
  if (c >= 0xc2 && c <= 0xdf) return cont(b1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(b1) || !cont(b[i + 2])) return 0;
    if (c === 0xe0 && b1! < 0xa0) return 0;
    if (c === 0xed && b1! > 0x9f) return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(b1) || !cont(b[i + 2]) || !cont(b[i + 3])) return 0;
    if (c === 0xf0 && b1! < 0x90) return 0;
    if (c === 0xf4 && b1! > 0x8f) return 0;
    return 4;
  }
  return 0;
}

/** The name of these bytes (a file name read as bytes, an archive header's name field). */
export function nameFromBytes(bytes: Uint8Array): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buf)) return buf.toString("utf8");
  let out = "";
  let run = 0;
  let i = 0;
  while (i < buf.length) {
    const n = sequenceAt(buf, i);
    if (n) {
      i += n;
      continue;
    }
    out += buf.toString("utf8", run, i) + String.fromCharCode(0xdc00 + buf[i]!);
    i++;
    run = i;
  }
  return run === 0 ? buf.toString("utf8") : out + buf.toString("utf8", run);
}

/** The bytes of `name` (the inverse of nameFromBytes; it never throws, shellWord shows any string). */
export function nameToBytes(name: string): Buffer {
  if (!hasEscapedBytes(name)) return Buffer.from(name, "utf8");
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < name.length; i++) {
    const u = name.charCodeAt(i);
    if (u >= 0xd800 && u <= 0xdbff) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    } else if (u < 0xdc00 || u > 0xdfff) continue;
    // A lone surrogate outside U+DC80..U+DCFF is no escaped byte and no name's (nameFromBytes
    // never makes one): it stays in the run, which Node encodes as U+FFFD, as it always did.
    if (u < 0xdc80 || u > 0xdcff) continue;
    parts.push(Buffer.from(name.slice(run, i), "utf8"), Buffer.of(u - 0xdc00));
    run = i + 1;
  }
  parts.push(Buffer.from(name.slice(run), "utf8"));
  return Buffer.concat(parts);
}

const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, "g");

/** `name` with each escaped byte as `?`: what Python writes where a header field must be text. */
export const nameStandIn = (name: string): string => name.replace(LONE_SURROGATES, "?");

/** The number of bytes of `name`. */
export const nameByteLength = (name: string): number =>
  hasEscapedBytes(name) ? nameToBytes(name).length : Buffer.byteLength(name);

/** `rel` below `root` as a path the file system takes: bytes when `rel` holds escaped bytes. */
export function fsPath(root: string, rel: string): string | Buffer {
  if (!hasEscapedBytes(rel)) return path.join(root, rel);
  return Buffer.concat([Buffer.from(root.endsWith("/") ? root : root + "/"), nameToBytes(rel)]);
}
