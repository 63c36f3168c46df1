/**
 * The age payload: after the header, a 16-byte nonce, then STREAM (age v1 spec): the
 * plaintext in 64 KiB chunks, each sealed with ChaCha20-Poly1305 under
 * HKDF-SHA256(file key, nonce, "payload"), chunk nonce = 11-byte big-endian counter || a byte
 * that is 1 on the last chunk. Only the last chunk may be shorter than 64 KiB, and it is empty
 * only when the whole plaintext is.
 *
 * Why node:crypto and not the library's payload code: its pure-JavaScript ChaCha20-Poly1305
 * streamed 22-37 MB/s on this machine against ~200 MB/s for OpenSSL's, which made an encrypted
 * restore several times slower than a plain one. The header and the recipients' stanzas stay
 * with the library; the interop tests check both directions against it and against `age`.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";

export const CHUNK_BYTES = 64 * 1024;
const TAG_BYTES = 16;
export const PAYLOAD_NONCE_BYTES = 16;

/** A payload chunk failed authentication, or the payload was cut or extended. */
export class AgePayloadError extends Error {
  override name = "AgePayloadError";
}

export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32));
}

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // 2^48 chunks of 64 KiB: far past any archive
  n[11] = last ? 1 : 0;
  return n;
}

/**
 * Cuts a byte stream into fixed-size chunks in one reused buffer. Why not a fresh Buffer per
 * chunk: each one counts as external memory until V8 collects it, and on top of the
 * decompressor's output those extra megabytes cost a streaming restore more full collections.
 */
class Chunker {
  private readonly buf: Buffer;
  private size = 0;
  constructor(chunkBytes: number) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
  }
  /**
   * Adds `bytes`, calling `full` with every full chunk that more bytes follow (a full last chunk
   * must wait for the end). A chunk is valid only during the call: the buffer is reused after.
   */
  push(bytes: Buffer, full: (chunk: Buffer) => void): void {
    const n = this.buf.length;
    let off = 0;
    while (off < bytes.length) {
      if (this.size === n) {
        full(this.buf);
        this.size = 0;
      }
      if (this.size === 0 && bytes.length - off > n) {
        full(bytes.subarray(off, off + n)); // a whole chunk in the input: no copy
        off += n;
        continue;
      }
      const take = Math.min(n - this.size, bytes.length - off);
      bytes.copy(this.buf, this.size, off, off + take);
      this.size += take;
      off += take;
    }
  }
  /** What is left at the end (valid until the next push). */
  rest(): Buffer {
    return this.buf.subarray(0, this.size);
  }
}

export class StreamSealer {
  private readonly key: Buffer;
  private counter = 0;
  private readonly chunks = new Chunker(CHUNK_BYTES);
  constructor(fileKey: Uint8Array, nonce: Uint8Array) {
    this.key = payloadKey(fileKey, nonce);
  }
  /** The sealed chunk as its ciphertext and its tag, not concatenated (a writev takes both). */
  private seal(plain: Buffer, last: boolean): Buffer[] {
    const c = createCipheriv("chacha20-poly1305", this.key, chunkNonce(this.counter++, last), {
      authTagLength: TAG_BYTES,
    });
    const sealed = c.update(plain);
    c.final(); // ChaCha20 is a stream cipher: nothing is held back
    return [sealed, c.getAuthTag()];
  }
  update(plain: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.chunks.push(plain, (chunk) => out.push(...this.seal(chunk, false)));
    return out;
  }
  final(): Buffer {
    return Buffer.concat(this.seal(this.chunks.rest(), true));
  }
}

export class StreamOpener {
  private readonly key: Buffer;
  private counter = 0;
  private readonly chunks = new Chunker(CHUNK_BYTES + TAG_BYTES);
  constructor(fileKey: Uint8Array, nonce: Uint8Array) {
    this.key = payloadKey(fileKey, nonce);
  }
  private open(sealed: Buffer, last: boolean): Buffer {
    if (sealed.length < TAG_BYTES)
      throw new AgePayloadError("the payload is truncated (a chunk shorter than its tag)");
    const d = createDecipheriv("chacha20-poly1305", this.key, chunkNonce(this.counter, last), {
      authTagLength: TAG_BYTES,
    });
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = d.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      d.final();
    } catch {
      throw new AgePayloadError(
        last
          ? `payload chunk ${this.counter} fails authentication as the last one: altered or truncated`
          : `payload chunk ${this.counter} fails authentication: altered`,
      );
    }
    this.counter++;
    return plain;
  }
  /** Authenticated plaintext of every chunk complete so far. */
  update(sealed: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.chunks.push(sealed, (chunk) => out.push(this.open(chunk, false)));
    return out;
  }
  final(): Buffer {
    const first = this.counter === 0;
    const plain = this.open(this.chunks.rest(), true);
    if (!first && plain.length === 0) throw new AgePayloadError("the payload ends with an empty chunk");
    return plain;
  }
}
