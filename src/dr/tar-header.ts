/**
 * The tar header block(s) of one archive entry, written straight into the caller's buffer.
 *
 * The common entry (an ASCII path under 100 bytes, mode, size and mtime that fit their octal
 * fields) is encoded here, byte for byte as node-tar's `Header` encodes it, without the objects,
 * Date and per-header Buffer that `Header` costs for each of thousands of files. Anything else
 * (a long or non-ASCII path, a huge size) goes through node-tar's `Header`, plus a PAX record when
 * the name does not fit ustar, so Python's `tarfile` and GNU tar read every archive.
 */
import { Header } from "tar/header";
import { Pax } from "tar/pax";

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

/** node-tar's octal field: zero-padded digits, a space, a NUL (no space when the digits fill it). */
function writeOctal(buf: Buffer, off: number, size: number, num: number): void {
  const digits = Math.floor(num).toString(8);
  const text = digits.length === size - 1 ? digits : "0".repeat(size - digits.length - 2) + digits + " ";
  buf.write(text, off, "latin1");
  buf[off + text.length] = 0;
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
  buf.write(path, off, "latin1");
  writeOctal(buf, off + 100, 8, h.mode);
  writeOctal(buf, off + 108, 8, 0); // uid
  writeOctal(buf, off + 116, 8, 0); // gid
  writeOctal(buf, off + 124, 12, size);
  writeOctal(buf, off + 136, 12, mtime);
  buf[off + 156] = h.type === "Directory" ? 0x35 : 0x30;
  buf.write("ustar\u000000", off + 257, "latin1");
  writeOctal(buf, off + 329, 8, 0); // devmajor
  writeOctal(buf, off + 337, 8, 0); // devminor
  let sum = 8 * 0x20; // the checksum field counts as spaces
  for (let i = off; i < off + 148; i++) sum += buf[i]!;
  for (let i = off + 156; i < off + BLOCK; i++) sum += buf[i]!;
  writeOctal(buf, off + 148, 8, sum);
  return true;
}

/** The header block(s) for one entry through node-tar (a PAX record first when needed). */
export function nodeTarHeader(h: HeaderFields): Buffer {
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
 * Writes the header of `h` into `buf` at `off` when it is a single zeroed-out block there and
 * returns 512; otherwise returns the header bytes for the caller to copy.
 */
export function writeHeader(h: HeaderFields, buf: Buffer, off: number): number | Buffer {
  if (buf.length - off >= BLOCK) {
    buf.fill(0, off, off + BLOCK);
    if (encodeCommon(h, entryPath(h), entrySize(h), buf, off)) return BLOCK;
  }
  return nodeTarHeader(h);
}

/** The header block(s) of `h` as a new Buffer. */
export function encodeHeader(h: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  const out = writeHeader(h, block, 0);
  return typeof out === "number" ? block : out;
}
