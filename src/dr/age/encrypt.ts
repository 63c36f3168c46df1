/**
 * Encrypting a backup to age recipients: the header (`keys.ts`, `header.ts`), the payload nonce,
 * then the STREAM payload (`stream.ts`). A standard binary age file that `age -d` opens.
 */
import { randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { makeHeader } from "./keys.js";
import { PAYLOAD_NONCE_BYTES, StreamSealer } from "./stream.js";

export class AgeEncryptor {
  private headerPending: Buffer | undefined;
  private constructor(
    header: Buffer,
    private readonly sealer: StreamSealer,
    /** The file key, for reading back what was written before an old archive is replaced. */
    readonly fileKey: Uint8Array,
  ) {
    this.headerPending = header;
  }

  static async create(recipients: readonly string[]): Promise<AgeEncryptor> {
    const fileKey = randomBytes(16);
    const nonce = randomBytes(PAYLOAD_NONCE_BYTES);
    const header = await makeHeader(fileKey, recipients);
    return new AgeEncryptor(Buffer.concat([header, nonce]), new StreamSealer(fileKey, nonce), fileKey);
  }

  private withHeader(parts: Buffer[]): Buffer[] {
    if (!this.headerPending) return parts;
    const h = this.headerPending;
    this.headerPending = undefined;
    return [h, ...parts];
  }
  update(plain: Buffer): Buffer[] {
    return this.withHeader(this.sealer.update(plain));
  }
  final(): Buffer[] {
    return this.withHeader([this.sealer.final()]);
  }
}

/** Transform for pipelines: plaintext in, age file out. */
export function ageEncryptStream(encryptor: AgeEncryptor): Transform {
  const push = (t: Transform, parts: Buffer[]): void => {
    for (const p of parts) t.push(p);
  };
  return new Transform({
    transform(this: Transform, chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        push(this, encryptor.update(chunk));
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(this: Transform, cb: TransformCallback) {
      try {
        push(this, encryptor.final());
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
