/**
 * The tar header block(s) of one archive entry, written straight into the caller's buffer.
 *
 * The common entry (an ASCII path under 100 bytes, mode, size and mtime that fit their octal
 * fields) is encoded here, byte for byte as node-tar's `Header` encodes it, without the objects,
 * Date and per-header Buffer that `Header` costs for each of thousands of files. Anything else
 * (a long or non-ASCII path, a huge size) goes through node-tar's `Header`, plus a PAX record when
 * the name does not fit ustar, so Python's `tarfile` and GNU tar read every archive. node-tar
 * loads only for such an entry: most backups have none.
 */

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
