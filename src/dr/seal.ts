/**
 * The archive seal (format_version 2): a second gzip member, 1,085 bytes, that closes every
 * archive we write and holds the sha256 of everything before it.
 *
 * Why: gzip checks only what it decompresses. Many different deflate streams decode to the same
 * bytes (a back-reference to zeros at another distance, the unused bits of a block's last
 * byte), so a flipped bit can leave every file intact and every CRC valid, and the archive's
 * own checks cannot see it. The seal can: any change to the bytes of the first member changes
 * its sha256, and the seal itself is compared byte for byte with the one expected.
 *
 * Layout of the seal member (RFC 1952, RFC 1951), every byte fixed except the digest:
 *   1f 8b 08 04 00000000 00 03   header, FLG = FEXTRA, mtime 0, OS unix
 *   24 00                        XLEN = 36
 *   42 53 20 00 <32 bytes>       subfield "BS", length 32, sha256 of member 1
 *   01 00 04 ff fb <1024 zeros>  one final stored block: the tar end-of-archive marker
 *   <crc32 of 1024 zeros> 00 04 00 00   CRC32, ISIZE
 * Readers that know nothing of it (Python's tarfile, GNU tar, gzip) skip the extra field and
 * read the two zero blocks as the end of the tar archive.
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { crc32 } from "node:zlib";

const END_OF_ARCHIVE = Buffer.alloc(1024);
const SUBFIELD_ID = Buffer.from("BS", "latin1");
const HEADER = Buffer.from("1f8b08040000000000032400", "hex");
const STORED_BLOCK_HEAD = Buffer.from([0x01, 0x00, 0x04, 0xff, 0xfb]);

function trailer(): Buffer {
  const t = Buffer.alloc(8);
  t.writeUInt32LE(crc32(END_OF_ARCHIVE), 0);
  t.writeUInt32LE(END_OF_ARCHIVE.length, 4);
  return t;
}
const TRAILER = trailer();

/** The seal member for a first member whose sha256 is `digest`. */
export function sealMember(digest: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(digest.length, 0);
  return Buffer.concat([HEADER, SUBFIELD_ID, len, digest, STORED_BLOCK_HEAD, END_OF_ARCHIVE, TRAILER]);
}

export const SEAL_BYTES = sealMember(Buffer.alloc(32)).length;

/** Passes a gzip member through and appends its seal. */
export function sealStream(): Transform {
  const hash = createHash("sha256");
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      cb(null, sealMember(hash.digest()));
    },
  });
}

/**
 * Watches the gzip bytes of an archive as they are read: hashes all but the last SEAL_BYTES,
 * keeps those, and at the end says whether they are the seal of what came before.
 */
export class SealChecker {
  private readonly hash: Hash = createHash("sha256");
  private tail = Buffer.alloc(0);

  update(bytes: Buffer): void {
    if (bytes.length >= SEAL_BYTES) {
      this.hash.update(this.tail);
      this.hash.update(bytes.subarray(0, bytes.length - SEAL_BYTES));
      this.tail = Buffer.from(bytes.subarray(bytes.length - SEAL_BYTES));
      return;
    }
    const all = Buffer.concat([this.tail, bytes]);
    const cut = Math.max(0, all.length - SEAL_BYTES);
    this.hash.update(all.subarray(0, cut));
    this.tail = all.subarray(cut);
  }

  /** True when the stream ended with the seal of everything before it. */
  sealed(): boolean {
    return this.tail.length === SEAL_BYTES && this.tail.equals(sealMember(this.hash.digest()));
  }
}
