/**
 * The tar header block(s) of one archive entry, written straight into the caller's buffer.
 *
 * The common entry (an ASCII path under 100 bytes, mode, size and mtime that fit their octal
 * fields) is encoded here, byte for byte as node-tar's `Header` encodes it, without the objects,
 * Date and per-header Buffer that `Header` costs for each of thousands of files. Anything else
 * (a long or non-ASCII path, a huge size) goes through node-tar's `Header`, plus a PAX record when
 * the name does not fit ustar, so Python's `tarfile` and GNU tar read every archive. node-tar
 * loads only for such an entry: most backups have none.
 *
 * Reading is the mirror image: `decodeCommonHeader` decodes a block in that common form (a file
 * or folder, ustar without a prefix, a printable ASCII name, plain octal numbers) to what
 * node-tar's `Header` makes of it, and declines anything else, which the caller then hands to
 * `Header`. A restore decodes thousands of headers; `Header` decodes every field of each (user
 * and group names, device numbers, access times) into strings, numbers and Dates.
 */

import { isUtf8 } from "node:buffer";
import { basename } from "node:path";
import { hasEscapedBytes, nameFromBytes, nameStandIn, nameToBytes } from "../workspace/raw-name.js";

export const BLOCK = 512;

export interface HeaderFields {
  path: string;
  type: "File" | "Directory";
  size: number;
  mode: number;
  mtimeMs: number;
}

const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Zeroes `buf` from `start` to `end` with the typed array's own fill: Buffer's fill is JavaScript
 * that validates its arguments, compiled again by every process that packs thousands of headers.
 */
export function zeroFill(buf: Buffer, start: number, end: number): void {
  Uint8Array.prototype.fill.call(buf, 0, start, end);
}

/** Writes the ASCII `text` at `off`; returns the sum of its bytes (the header checksum counts them). */
function writeAscii(buf: Buffer, off: number, text: string): number {
  let sum = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    buf[off + i] = c;
    sum += c;
  }
  return sum;
}

/**
 * node-tar's octal field: zero-padded digits, a space, a NUL (no space when the digits fill it).
 * `num` fits the field. Returns the sum of the bytes written.
 */
function writeOctal(buf: Buffer, off: number, size: number, num: number): number {
  let n = Math.floor(num);
  let digits = 1;
  for (let x = n; x >= 8; x = Math.floor(x / 8)) digits++;
  const width = digits === size - 1 ? digits : size - 2;
  let sum = 0;
  for (let i = width - 1; i >= 0; i--) {
    const c = 0x30 + (n % 8);
    buf[off + i] = c;
    sum += c;
    n = Math.floor(n / 8);
  }
  if (width === size - 2) {
    buf[off + width] = 0x20;
    sum += 0x20;
  }
  buf[off + size - 1] = 0;
  return sum;
}

/**
 * Encodes the common entry into `buf` at `off` (512 bytes, which must be zero on entry); returns
 * false, having written nothing, when the entry needs node-tar.
 */
function encodeCommon(h: HeaderFields, path: string, size: number, buf: Buffer, off: number): boolean {
  const mtime = Math.floor(h.mtimeMs / 1000);
  if (
    path.length >= 100 ||
    !PRINTABLE_ASCII.test(path) ||
    h.mode < 0 ||
    h.mode > MAX_OCTAL_8 ||
    size > MAX_OCTAL_12 ||
    mtime < 0 ||
    mtime > MAX_OCTAL_12
  ) {
    return false;
  }
  // The checksum is the sum of the block's bytes with its own field as spaces; the rest is zero.
  let sum = 8 * 0x20;
  sum += writeAscii(buf, off, path);
  sum += writeOctal(buf, off + 100, 8, h.mode);
  sum += writeOctal(buf, off + 108, 8, 0); // uid
  sum += writeOctal(buf, off + 116, 8, 0); // gid
  sum += writeOctal(buf, off + 124, 12, size);
  sum += writeOctal(buf, off + 136, 12, mtime);
  const type = h.type === "Directory" ? 0x35 : 0x30;
  buf[off + 156] = type;
  sum += type;
  sum += writeAscii(buf, off + 257, "ustar\u000000");
  sum += writeOctal(buf, off + 329, 8, 0); // devmajor
  sum += writeOctal(buf, off + 337, 8, 0); // devminor
  writeOctal(buf, off + 148, 8, sum);
  return true;
}

/** One PAX record: `<length> <key>=<value>\n`, the length counting its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

/**
 * A PAX extended header naming the entry with the raw bytes of a name that is not UTF-8 after
 * `hdrcharset=BINARY`, as Python's tarfile writes it (and reads it back as those bytes); node-tar
 * would write the name's text, U+FFFD for each such byte. `rest` holds node-tar's other records.
 */
function binaryPaxHeader(
  Header: typeof import("tar/header").Header,
  name: Buffer,
  standIn: string,
  rest: string,
  mtime: Date,
): Buffer {
  const body = Buffer.concat([
    paxRecord("hdrcharset", Buffer.from("BINARY")),
    paxRecord("path", name),
    Buffer.from(rest),
  ]);
  const out = Buffer.alloc(BLOCK + Math.ceil(body.length / BLOCK) * BLOCK);
  new Header({
    path: ("PaxHeader/" + basename(standIn)).slice(0, 99),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime,
    type: "ExtendedHeader",
    linkpath: "",
    uname: "",
    gname: "",
  }).encode(out, 0);
  body.copy(out, BLOCK);
  return out;
}

/** The header block(s) for one entry through node-tar (a PAX record first when needed). */
export async function nodeTarHeader(h: HeaderFields): Promise<Buffer> {
  const [{ Header }, { Pax }] = await Promise.all([import("tar/header"), import("tar/pax")]);
  const data = {
    path: entryPath(h),
    type: h.type,
    size: entrySize(h),
    mode: h.mode,
    uid: 0,
    gid: 0,
    uname: "",
    gname: "",
    mtime: new Date(Math.floor(h.mtimeMs / 1000) * 1000),
  } as const;
  const block = Buffer.alloc(BLOCK);
  if (hasEscapedBytes(data.path)) {
    // The ustar field holds a stand-in (what Python writes there); readers take the PAX path.
    const standIn = { ...data, path: nameStandIn(data.path) };
    new Header(standIn).encode(block, 0);
    const rest = new Pax({ ...standIn, path: undefined }).encodeBody();
    return Buffer.concat([
      binaryPaxHeader(Header, nameToBytes(data.path), standIn.path, rest, data.mtime),
      block,
    ]);
  }
  if (new Header(data).encode(block, 0)) return Buffer.concat([new Pax(data).encode(), block]);
  return block;
}

const entryPath = (h: HeaderFields): string => (h.type === "Directory" ? h.path + "/" : h.path);
const entrySize = (h: HeaderFields): number => (h.type === "File" ? h.size : 0);

/**
 * Writes the header of `h` into `buf` at `off` (512 bytes of room) when it is a single block and
 * returns 512; undefined when it needs nodeTarHeader (the 512 bytes are then zeros).
 */
export function writeHeader(h: HeaderFields, buf: Buffer, off: number): number | undefined {
  zeroFill(buf, off, off + BLOCK);
  return encodeCommon(h, entryPath(h), entrySize(h), buf, off) ? BLOCK : undefined;
}

/** The header block(s) of `h` as a new Buffer. */
export async function encodeHeader(h: HeaderFields): Promise<Buffer> {
  const block = Buffer.alloc(BLOCK);
  return writeHeader(h, block, 0) === undefined ? nodeTarHeader(h) : block;
}

/** What the tar reader takes of a header block: the fields of node-tar's `Header` of those names. */
export interface DecodedHeader {
  path?: string;
  type: string;
  size?: number;
  mode?: number;
  mtime?: Date;
  linkpath?: string;
  cksumValid: boolean;
}

const USTAR_MAGIC = Buffer.from("ustar\u000000", "latin1");
/**
 * The numeric fields `Header` decodes in a ustar block without a prefix: mode, uid, gid, size,
 * mtime, checksum, device numbers, access and change times. It throws on a base-256 one it cannot
 * read; the fast path takes none in base 256.
 */
const NUMERIC_FIELDS = [100, 108, 116, 124, 136, 148, 329, 337, 476, 488];

/**
 * An octal field in the form tar writers use: leading spaces, digits, then only NULs and spaces,
 * the last byte one of them. Undefined for anything else, which `Header` reads by rules of its
 * own (it parses the checksum across the bytes after its field when no NUL ends it).
 */
function plainOctal(buf: Buffer, off: number, size: number): number | undefined {
  const end = off + size;
  let i = off;
  while (i < end && buf[i] === 0x20) i++;
  const first = i;
  let value = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
  }
  if (i === first || i === end) return undefined;
  for (; i < end; i++) if (buf[i] !== 0 && buf[i] !== 0x20) return undefined;
  return value;
}

/**
 * The header in `block` (512 bytes) as node-tar's `Header` decodes it, when it is a file or folder
 * in the common form (see the top of the file); undefined otherwise.
 */
export function decodeCommonHeader(block: Buffer): DecodedHeader | undefined {
  const flag = block[156];
  if (flag !== 0x30 && flag !== 0x35) return undefined;
  for (let i = 0; i < USTAR_MAGIC.length; i++) if (block[257 + i] !== USTAR_MAGIC[i]) return undefined;
  // Any byte in the prefix field: `Header` would join a prefix to the name (an empty one too when
  // byte 475 is set, and what follows a newline after the first NUL).
  for (let i = 345; i <= 475; i++) if (block[i] !== 0) return undefined;
  for (const at of NUMERIC_FIELDS) if (block[at]! & 0x80) return undefined;
  let n = 0;
  for (; n < 100 && block[n] !== 0; n++) if (block[n]! < 0x20 || block[n]! > 0x7e) return undefined;
  // Bytes after the name's NUL: `Header` keeps those after a newline among them.
  for (let i = n; i < 100; i++) if (block[i] !== 0) return undefined;
  // A file named with a trailing slash: `Header` makes it a folder.
  if (flag === 0x30 && n > 0 && block[n - 1] === 0x2f) return undefined;
  const mode = plainOctal(block, 100, 8);
  const size = plainOctal(block, 124, 12);
  const mtime = plainOctal(block, 136, 12);
  const cksum = plainOctal(block, 148, 8);
  if (mode === undefined || size === undefined || mtime === undefined || cksum === undefined)
    return undefined;
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  const folder = flag === 0x35;
  return {
    path: block.toString("latin1", 0, n),
    type: folder ? "Directory" : "File",
    // `Header` gives a folder no size, whatever its field says.
    size: folder ? 0 : size,
    mode,
    mtime: new Date(mtime * 1000),
    cksumValid: sum === cksum,
  };
}

/** A NUL-terminated header field's bytes. */
function fieldBytes(block: Buffer, off: number, size: number): Buffer {
  const field = block.subarray(off, off + size);
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

/**
 * The name in `block` when its name or prefix field holds bytes that are not UTF-8 (Python's
 * tarfile writes a name's raw bytes there in GNU and ustar format), with those bytes kept as
 * raw-name.ts escapes them; undefined otherwise, when node-tar's `Header` reads the name right.
 * The prefix is joined as `Header` joins it.
 */
export function rawHeaderPath(block: Buffer): string | undefined {
  const name = fieldBytes(block, 0, 100);
  const ustar = block.subarray(257, 265).equals(USTAR_MAGIC);
  const prefix = ustar ? fieldBytes(block, 345, block[475] !== 0 ? 155 : 130) : Buffer.alloc(0);
  if (isUtf8(name) && isUtf8(prefix)) return undefined;
  const path = nameFromBytes(name);
  return prefix.length ? `${nameFromBytes(prefix)}/${path}` : path;
}

/**
 * The `path` and `linkpath` records of a PAX extended header with their values as raw-name.ts
 * keeps bytes: Python writes a name that is not UTF-8 as its raw bytes (with
 * `hdrcharset=BINARY`), and node-tar's parser, which reads the records as UTF-8 text, drops such
 * a record (its length no longer matches) and the entry would take the ustar field's stand-in.
 */
export function paxNames(body: Buffer): { path?: string; linkpath?: string } {
  const out: { path?: string; linkpath?: string } = {};
  for (let off = 0; off < body.length;) {
    const space = body.indexOf(0x20, off);
    if (space < 0) break;
    const len = Number(body.toString("latin1", off, space));
    if (!Number.isSafeInteger(len) || len <= space - off || off + len > body.length) break;
    const record = body.subarray(space + 1, off + len);
    const eq = record.indexOf(0x3d);
    if (eq > 0 && record[record.length - 1] === 0x0a) {
      const key = record.toString("latin1", 0, eq);
      if (key === "path" || key === "linkpath") {
        const value = record.subarray(eq + 1, record.length - 1);
        const nul = value.indexOf(0);
        out[key] = nameFromBytes(nul < 0 ? value : value.subarray(0, nul));
      }
    }
    off += len;
  }
  return out;
}
