/**
 * Decrypting an age file chunk by chunk. Unlike Fernet, age authenticates the header before
 * any payload (a wrong identity or an altered header is known at once) and every 64 KiB chunk
 * on its own, so what `update()` returns is authenticated; only the end of the file (cut at a
 * chunk boundary, or extended) is known at `final()`.
 */
import { AgeFormatError, describeStanzas, headerLength } from "./header.js";
import { AgeIdentityError, unwrapFileKey } from "./keys.js";
import { PAYLOAD_NONCE_BYTES, StreamOpener } from "./stream.js";

export class AgeDecryptor {
  private pending: Buffer = Buffer.alloc(0);
  private opener: StreamOpener | undefined;
  /** The header once read (its stanzas describe the recipients in messages). */
  header: Buffer | undefined;

  constructor(private readonly identities: readonly string[]) {}

  /** Authenticated plaintext of the chunks complete so far (empty while the header is read). */
  async update(bytes: Buffer): Promise<Buffer[]> {
    if (this.opener) return this.opener.update(bytes);
    this.pending = this.pending.length ? Buffer.concat([this.pending, bytes]) : bytes;
    const len = headerLength(this.pending);
    if (len < 0 || this.pending.length < len + PAYLOAD_NONCE_BYTES) return [];
    this.header = Buffer.from(this.pending.subarray(0, len));
    const nonce = this.pending.subarray(len, len + PAYLOAD_NONCE_BYTES);
    const fileKey = await unwrapFileKey(this.header, this.identities).catch((err: unknown) => {
      if (err instanceof AgeIdentityError) {
        throw new AgeIdentityError(
          `none of the ${this.identities.length} identities opens this archive; it is encrypted to recipients ${describeStanzas(this.header!)}`,
        );
      }
      throw err;
    });
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
