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

/** Collects bytes into fixed-size pieces without copying more than once. */
class Chunker {
  private parts: Buffer[] = [];
  private size = 0;
  constructor(private readonly chunkBytes: number) {}
  get buffered(): number {
    return this.size;
  }
  push(bytes: Buffer): void {
    if (bytes.length) {
      this.parts.push(bytes);
      this.size += bytes.length;
    }
  }
  /** Full chunks, keeping back at least one byte (a full last chunk must wait for the end). */
  *fullChunksBeforeMore(): Generator<Buffer> {
    while (this.size > this.chunkBytes) yield this.take(this.chunkBytes);
  }
  rest(): Buffer {
    return this.take(this.size);
  }
  private take(n: number): Buffer {
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
    this.parts = all.length > n ? [all.subarray(n)] : [];
    this.size -= n;
    return all.subarray(0, n);
  }
}

export class StreamSealer {
  private readonly key: Buffer;
  private counter = 0;
  private readonly chunks = new Chunker(CHUNK_BYTES);
  constructor(fileKey: Uint8Array, nonce: Uint8Array) {
    this.key = payloadKey(fileKey, nonce);
  }
  private seal(plain: Buffer, last: boolean): Buffer {
    const c = createCipheriv("chacha20-poly1305", this.key, chunkNonce(this.counter++, last), {
      authTagLength: TAG_BYTES,
    });
    return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  }
  update(plain: Buffer): Buffer[] {
    this.chunks.push(plain);
    return [...this.chunks.fullChunksBeforeMore()].map((p) => this.seal(p, false));
  }
  final(): Buffer {
    return this.seal(this.chunks.rest(), true);
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
    this.chunks.push(sealed);
    return [...this.chunks.fullChunksBeforeMore()].map((c) => this.open(c, false));
  }
  final(): Buffer {
    const first = this.counter === 0;
    const plain = this.open(this.chunks.rest(), true);
    if (!first && plain.length === 0) throw new AgePayloadError("the payload ends with an empty chunk");
    return plain;
  }
}
