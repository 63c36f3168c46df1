/**
 * Decrypting an age file chunk by chunk. Unlike Fernet, age authenticates the header before
 * any payload (a wrong identity or an altered header is known at once) and every 64 KiB chunk
 * on its own, so what `update()` returns is authenticated; only the end of the file (cut at a
 * chunk boundary, or extended) is known at `final()`.
 */
import { AgeFormatError, headerLength, sealHeader, stanzaText } from "./header.js";
import type { KeyCache } from "../fernet.js";
import { unwrapFileKeyCached } from "./keys.js";
import { PAYLOAD_NONCE_BYTES, StreamOpener } from "./stream.js";

export class AgeDecryptor {
  private pending: Buffer = Buffer.alloc(0);
  private opener: StreamOpener | undefined;
  /** The header once read (its stanzas describe the recipients in messages). */
  header: Buffer | undefined;

  /**
   * `identities` to unwrap the file key with, or the file key itself (reading back our own file).
   * `keyCache`: where startFileKeyUnwrap may have unwrapped it already.
   */
  constructor(
    private readonly keys: readonly string[] | { fileKey: Uint8Array },
    private readonly keyCache?: KeyCache,
  ) {}

  private async fileKeyOf(header: Buffer): Promise<Uint8Array> {
    if (!Array.isArray(this.keys)) {
      const { fileKey } = this.keys as { fileKey: Uint8Array };
      if (!sealHeader(fileKey, stanzaText(header)).equals(header)) {
        throw new AgeFormatError("the header was altered: its MAC does not match");
      }
      return fileKey;
    }
    const identities = this.keys as readonly string[];
    return unwrapFileKeyCached(header, identities, this.keyCache);
  }

  /** Authenticated plaintext of the chunks complete so far (empty while the header is read). */
  async update(bytes: Buffer): Promise<Buffer[]> {
    if (this.opener) return this.opener.update(bytes);
    this.pending = this.pending.length ? Buffer.concat([this.pending, bytes]) : bytes;
    const len = headerLength(this.pending);
    if (len < 0 || this.pending.length < len + PAYLOAD_NONCE_BYTES) return [];
    this.header = Buffer.from(this.pending.subarray(0, len));
    const nonce = this.pending.subarray(len, len + PAYLOAD_NONCE_BYTES);
    const fileKey = await this.fileKeyOf(this.header);
    this.opener = new StreamOpener(fileKey, nonce);
    const rest = this.pending.subarray(len + PAYLOAD_NONCE_BYTES);
    this.pending = Buffer.alloc(0);
    return this.opener.update(rest);
  }

  final(): Buffer {
    if (!this.opener) throw new AgeFormatError("the age file is truncated inside its header");
    return this.opener.final();
  }
}
