/**
 * Streaming Fernet, byte-compatible with Python's `cryptography.fernet` as the reference uses it:
 * the encrypted file is `salt(16) || token`, where the token is URL-safe base64 (with padding) of
 * `0x80 | seconds(8, BE) | iv(16) | AES-128-CBC(PKCS7) ciphertext | HMAC-SHA256(32)` and the key is
 * PBKDF2-HMAC-SHA256(password, salt, 600,000, 32 bytes): first half signs, second half encrypts.
 *
 * Python's Fernet holds the whole token in memory; here both directions work chunk by chunk.
 * Fernet authenticates only at its end, so decrypted bytes are NOT trusted until `final()`
 * returns: callers write them to a staging area and accept it only after that.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  pbkdf2,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import type { Cipher, Decipher, Hmac } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

export const SALT_BYTES = 16;
export const PBKDF2_ITERATIONS = 600_000;
const VERSION = 0x80;
const HEADER_BYTES = 1 + 8 + 16;
const HMAC_BYTES = 32;
/** The smallest token: header, one cipher block, HMAC. */
const MIN_TOKEN_BYTES = HEADER_BYTES + 16 + HMAC_BYTES;

/** The data is not a Fernet token at all (structure broken, truncated, bad characters). */
export class FernetFormatError extends Error {
  override name = "FernetFormatError";
}
/** The HMAC does not match: wrong password, or the archive was altered. */
export class FernetAuthError extends Error {
  override name = "FernetAuthError";
}

/** PBKDF2-HMAC-SHA256(password, salt, 600k) → 32 bytes (runs in the thread pool). */
export function deriveKey(password: string, salt: Buffer, iterations = PBKDF2_ITERATIONS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(password, "utf8"), salt, iterations, 32, "sha256", (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/**
 * Keys of encrypted archives worked out ahead, a computation still running counts: Fernet keys
 * by password and salt, age file keys by identities and header (age/keys.ts).
 */
export type KeyCache = Map<string, Buffer | Promise<Buffer>>;

const cacheKeyOf = (password: string, salt: Buffer): string =>
  createHash("sha256").update(password).update(salt).digest("hex");

/**
 * Starts deriving the key of an encrypted archive that begins with `head`, into `cache`, so
 * that the 0.1 s of PBKDF2 runs while the caller gets ready instead of after.
 */
export function startKeyDerivation(head: Buffer, password: string, cache: KeyCache): void {
  if (!looksEncrypted(head)) return;
  const salt = Buffer.from(head.subarray(0, SALT_BYTES));
  const id = cacheKeyOf(password, salt);
  if (cache.has(id)) return;
  const pending = deriveKey(password, salt);
  pending.catch(() => {}); // the decryptor awaits it and reports the failure
  cache.set(id, pending);
}

/** The bytes of `salt || token` that hold the token's header and its first cipher block, in base64. */
export const FIRST_BLOCK_BYTES = SALT_BYTES + Math.ceil((HEADER_BYTES + 16) / 3) * 4;

/**
 * The first 16 plaintext bytes of the `salt || token` that begins with `head` (FIRST_BLOCK_BYTES
 * of it), under the key of `password` (the derivation started in `cache`, or started there
 * now): unauthenticated, so a wrong key gives noise where the right one gives a gzip start.
 * Undefined when `head` does not hold a well-formed start (the read reports what is wrong).
 */
export async function firstPlainBlock(
  head: Buffer,
  password: string,
  cache: KeyCache,
): Promise<Buffer | undefined> {
  const text = head.subarray(SALT_BYTES, FIRST_BLOCK_BYTES).toString("latin1");
  if (text.length < FIRST_BLOCK_BYTES - SALT_BYTES || !B64_CHARS.test(text)) return undefined;
  const token = Buffer.from(text, "base64url");
  if (token[0] !== VERSION) return undefined;
  startKeyDerivation(head, password, cache);
  const key = await cache.get(cacheKeyOf(password, head.subarray(0, SALT_BYTES)))!;
  const decipher = createDecipheriv("aes-128-cbc", key.subarray(16), token.subarray(9, HEADER_BYTES));
  decipher.setAutoPadding(false);
  return decipher.update(token.subarray(HEADER_BYTES, HEADER_BYTES + 16));
}

/** Base64 (URL-safe, padded) of a byte stream, emitted in whole 3-byte groups as data arrives. */
class Base64Encoder {
  private carry = Buffer.alloc(0);
  update(bytes: Buffer): string {
    const all = this.carry.length ? Buffer.concat([this.carry, bytes]) : bytes;
    const whole = all.length - (all.length % 3);
    this.carry = Buffer.from(all.subarray(whole));
    return all.subarray(0, whole).toString("base64url");
  }
  final(): string {
    const text = this.carry.toString("base64url");
    this.carry = Buffer.alloc(0);
    return text + "=".repeat((4 - (text.length % 4)) % 4);
  }
}

const B64_CHARS = /^[A-Za-z0-9_-]*$/;
const B64_INDEX = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Strict streaming decoder: alphabet checked, padding only at the end, unused bits zero. */
class Base64Decoder {
  private carry = "";
  private sawPadding = false;
  update(text: string): Buffer {
    if (this.sawPadding && text.length) throw new FernetFormatError("data after the end of the token");
    let all = this.carry + text;
    const pad = all.indexOf("=");
    if (pad >= 0) {
      // Padding may only close the token: what follows must be '=' and the total a multiple of 4.
      const tail = all.slice(pad);
      if (!/^=+$/.test(tail) || tail.length > 2) throw new FernetFormatError("misplaced '=' in the token");
      if (all.length % 4 !== 0) {
        // The rest of the padding may come with the next chunk; final() refuses it if not.
        this.carry = all;
        return Buffer.alloc(0);
      }
      this.sawPadding = true;
      const body = all.slice(0, pad);
      this.carry = "";
      if (!B64_CHARS.test(body)) throw new FernetFormatError("character outside the base64url alphabet");
      const rem = body.length % 4;
      const last = B64_INDEX.indexOf(body[body.length - 1] ?? "A");
      if ((rem === 2 && (last & 0x0f) !== 0) || (rem === 3 && (last & 0x03) !== 0)) {
        throw new FernetFormatError("non-canonical base64 at the end of the token");
      }
      return Buffer.from(body, "base64url");
    }
    const whole = all.length - (all.length % 4);
    this.carry = all.slice(whole);
    all = all.slice(0, whole);
    // Node's decoder stops at or skips any character outside both base64 alphabets, so whole
    // quads decode to exactly 3 bytes each only when every character is in one of them; '+'
    // and '/' are the standard alphabet's, which base64url does not allow. (Cheaper than
    // matching every character against B64_CHARS.)
    const bytes = Buffer.from(all, "base64url");
    if (bytes.length !== (whole / 4) * 3 || all.includes("+") || all.includes("/"))
      throw new FernetFormatError("character outside the base64url alphabet");
    return bytes;
  }
  final(): Buffer {
    if (this.carry.length) {
      // Unpadded tail: Python's decoder rejects it, so do we.
      throw new FernetFormatError("token length is not a multiple of 4 (truncated?)");
    }
    return Buffer.alloc(0);
  }
}

/** Encrypts a stream: `header()` first (salt + token start), then `update()`s, then `final()`. */
export class FernetEncryptor {
  private readonly cipher: Cipher;
  private readonly hmac: Hmac;
  private readonly b64 = new Base64Encoder();
  private started = false;
  constructor(
    key: Buffer,
    private readonly salt: Buffer,
    nowSeconds = Math.floor(Date.now() / 1000),
    iv = randomBytes(16),
  ) {
    if (key.length !== 32) throw new Error("fernet: key must be 32 bytes");
    this.hmac = createHmac("sha256", key.subarray(0, 16));
    this.cipher = createCipheriv("aes-128-cbc", key.subarray(16), iv);
    const head = Buffer.alloc(HEADER_BYTES);
    head[0] = VERSION;
    head.writeBigUInt64BE(BigInt(nowSeconds), 1);
    iv.copy(head, 9);
    this.pendingHead = head;
  }
  private pendingHead: Buffer;
  static async create(password: string): Promise<FernetEncryptor> {
    const salt = randomBytes(SALT_BYTES);
    return new FernetEncryptor(await deriveKey(password, salt), salt);
  }
  private emit(bytes: Buffer): Buffer {
    this.hmac.update(bytes);
    return Buffer.from(this.b64.update(bytes), "latin1");
  }
  update(plain: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      this.started = true;
      parts.push(this.salt, this.emit(this.pendingHead));
    }
    parts.push(this.emit(this.cipher.update(plain)));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
  final(): Buffer {
    const head = this.started ? Buffer.alloc(0) : this.update(Buffer.alloc(0));
    const last = this.emit(this.cipher.final());
    const mac = this.hmac.digest();
    const tail = Buffer.from(this.b64.update(mac) + this.b64.final(), "latin1");
    return Buffer.concat([head, last, tail]);
  }
}

/**
 * Decrypts `salt || token` chunk by chunk. `update()` returns plaintext that is NOT yet
 * authenticated; `final()` throws FernetAuthError when the HMAC does not match.
 */
export class FernetDecryptor {
  private salt = Buffer.alloc(0);
  private readonly b64 = new Base64Decoder();
  private head = Buffer.alloc(0);
  /**
   * The newest decoded bytes are held back until more arrive: at the end, their last 32 are the
   * HMAC. Holding a whole chunk (not just 32 bytes) spares a copy of every chunk.
   */
  private held: Buffer = Buffer.alloc(0);
  /**
   * The first plaintext bytes, unauthenticated, kept even when `final()` refuses the token: they
   * tell a wrong key (noise) from a damaged token (a plausible start).
   */
  plainHead: Buffer = Buffer.alloc(0);
  private hmac?: Hmac;
  private decipher?: Decipher;
  private tokenBytes = 0;
  private ready?: Promise<void>;
  private key?: Buffer;

  constructor(
    private readonly password: string,
    private readonly keyCache?: KeyCache,
  ) {}

  /**
   * A decryptor for a bare token (no salt before it) under a key derived elsewhere: the WAL
   * archive's segments, whose generation derives its key once.
   */
  static withKey(key: Buffer): FernetDecryptor {
    const d = new FernetDecryptor("");
    d.salt = Buffer.alloc(SALT_BYTES);
    d.key = key;
    return d;
  }

  /** Feeds raw archive bytes; resolves to the plaintext they complete (unauthenticated). */
  async update(chunk: Buffer): Promise<Buffer> {
    let data = chunk;
    if (this.salt.length < SALT_BYTES) {
      const need = SALT_BYTES - this.salt.length;
      this.salt = Buffer.concat([this.salt, data.subarray(0, need)]);
      data = data.subarray(need);
      if (this.salt.length < SALT_BYTES) return Buffer.alloc(0);
    }
    if (!this.key) await this.deriveOnce();
    return this.consume(this.b64.update(data.toString("latin1")));
  }

  private async deriveOnce(): Promise<void> {
    this.ready ??= (async () => {
      const id = cacheKeyOf(this.password, this.salt);
      let key = this.keyCache?.get(id);
      if (!key) {
        key = deriveKey(this.password, this.salt);
        this.keyCache?.set(id, key);
      }
      this.key = await key;
    })();
    await this.ready;
  }

  private consume(decoded: Buffer): Buffer {
    if (!decoded.length) return decoded;
    this.tokenBytes += decoded.length;
    let data = decoded;
    if (!this.decipher) {
      this.head = Buffer.concat([this.head, data]);
      if (this.head.length < HEADER_BYTES) return Buffer.alloc(0);
      if (this.head[0] !== VERSION) throw new FernetFormatError("not a Fernet token (bad version byte)");
      const key = this.key!;
      this.hmac = createHmac("sha256", key.subarray(0, 16));
      this.hmac.update(this.head.subarray(0, HEADER_BYTES));
      this.decipher = createDecipheriv("aes-128-cbc", key.subarray(16), this.head.subarray(9, HEADER_BYTES));
      data = this.head.subarray(HEADER_BYTES);
      this.head = Buffer.alloc(0);
    }
    if (data.length < HMAC_BYTES) {
      // Too short to hold the whole HMAC: keep it with what came before (only near the end).
      this.held = Buffer.concat([this.held, data]);
      return Buffer.alloc(0);
    }
    // `data` alone can hold the HMAC, so everything held before it is ciphertext.
    const body = this.held;
    this.held = data;
    if (!body.length) return body;
    this.hmac!.update(body);
    return this.decrypt(body);
  }

  private decrypt(body: Buffer): Buffer {
    const plain = this.decipher!.update(body);
    if (this.plainHead.length < 16) this.plainHead = Buffer.concat([this.plainHead, plain.subarray(0, 16)]);
    return plain;
  }

  /** Checks structure and HMAC; returns the last plaintext bytes. Throws on any failure. */
  final(): Buffer {
    if (this.salt.length < SALT_BYTES) throw new FernetFormatError("file is shorter than the salt");
    this.consume(this.b64.final());
    if (this.tokenBytes < MIN_TOKEN_BYTES || !this.decipher || !this.hmac) {
      throw new FernetFormatError("token is too short (truncated?)");
    }
    if ((this.tokenBytes - HEADER_BYTES - HMAC_BYTES) % 16 !== 0) {
      throw new FernetFormatError("ciphertext is not a whole number of blocks (truncated?)");
    }
    const cut = this.held.length - HMAC_BYTES;
    const body = this.held.subarray(0, cut);
    const mac = this.held.subarray(cut);
    this.hmac.update(body);
    const plain = this.decrypt(body);
    const expected = this.hmac.digest();
    if (!timingSafeEqual(expected, mac)) {
      throw new FernetAuthError("authentication failed (wrong password, or the archive was altered)");
    }
    try {
      return Buffer.concat([plain, this.decipher.final()]);
    } catch {
      throw new FernetAuthError("bad padding after a valid HMAC");
    }
  }
}

/** Transform wrapper for pipelines: plaintext in, `salt || token` out. */
export function fernetEncryptStream(encryptor: FernetEncryptor): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        cb(null, encryptor.update(chunk));
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        cb(null, encryptor.final());
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}

/**
 * Whether a file certainly starts as `salt || Fernet token`: "gAAAAA" after the salt, the version
 * byte and the zero high bytes of the token's time (48 bits another file holds there by chance
 * once in 2^48). Strong enough to win over gzip's 2-byte magic, which a random salt begins with
 * once in 65,536 files.
 */
export function startsWithToken(head: Buffer): boolean {
  return (
    head.length >= SALT_BYTES + 6 && head.subarray(SALT_BYTES, SALT_BYTES + 6).toString("latin1") === "gAAAAA"
  );
}

/** Whether the first bytes of a file look like `salt || Fernet token` ("gA" after 16 bytes). */
export function looksEncrypted(head: Buffer): boolean {
  return (
    head.length >= SALT_BYTES + 6 && head.subarray(SALT_BYTES, SALT_BYTES + 2).toString("latin1") === "gA"
  );
}
