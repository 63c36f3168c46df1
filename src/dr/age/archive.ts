/**
 * An encrypted backup archive read as age: which key kind an archive needs (a password for
 * Fernet `.enc`, an identity for `.age`, with a hint when the other one was given), and the age
 * decryptor with its failures as exit codes: a wrong identity 4, an altered or truncated header
 * or chunk 5.
 */
import { ExitCode, UserError } from "../../errors/errors.js";
import type { KeyCache } from "../fernet.js";
import { AgeDecryptor } from "./decrypt.js";
import { AgeFormatError } from "./header.js";
import { AgeIdentityError, identityFailure } from "./keys.js";
import { AgePayloadError } from "./stream.js";

const IDENTITY_SOURCES = "--identity-file FILE or BERNSTEIN_DR_IDENTITY_FILE";
const PASSWORD_SOURCES = "--password-file FILE or BERNSTEIN_DR_PASSWORD";

/** Refuses (exit 2) to read an encrypted archive without the kind of key it needs. */
export function checkKeyKind(
  opts: { password?: string; identities?: readonly string[]; label?: string },
  age: boolean,
): void {
  const name = opts.label ?? "archive";
  if (age && opts.identities === undefined) {
    throw new UserError(
      opts.password !== undefined
        ? `${name} is encrypted to age recipients, not with a password: pass ${IDENTITY_SOURCES} (a password does not open it)`
        : `${name} is encrypted to age recipients: pass ${IDENTITY_SOURCES}`,
      ExitCode.USAGE,
    );
  }
  if (!age && opts.password === undefined) {
    throw new UserError(
      opts.identities !== undefined
        ? `${name} is encrypted with a password (Fernet), not to age recipients: pass ${PASSWORD_SOURCES} (an identity does not open it; 'dr rekey --to-age' converts it)`
        : `${name} is encrypted with a password (Fernet): pass ${PASSWORD_SOURCES}`,
      ExitCode.USAGE,
    );
  }
}

/**
 * The age decryptor behind readArchive: plaintext per chunk, failures as UserErrors.
 * `recipientFingerprints`: the archive's recipients as the catalogue recorded them; a wrong
 * identity is then told which keys do open it (the header alone only gives stanza counts).
 */
export class AgeArchiveDecryptor {
  private readonly inner: AgeDecryptor;
  constructor(
    identities: readonly string[],
    private readonly label = "archive",
    private readonly recipientFingerprints?: readonly string[],
    keyCache?: KeyCache,
  ) {
    this.inner = new AgeDecryptor(identities, keyCache);
  }

  async update(bytes: Buffer): Promise<Buffer> {
    try {
      const parts = await this.inner.update(bytes);
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    } catch (err) {
      throw this.userError(err);
    }
  }

  final(): Buffer {
    try {
      return this.inner.final();
    } catch (err) {
      throw this.userError(err);
    }
  }

  private userError(err: unknown): unknown {
    return ageReadError(err, this.label, this.recipientFingerprints);
  }
}

/** A failure reading an age archive as the user error it is: a wrong identity 4, damage 5. */
export function ageReadError(
  err: unknown,
  label: string,
  recipientFingerprints?: readonly string[],
): unknown {
  if (err instanceof AgeIdentityError) return identityFailure(label, err, recipientFingerprints);
  if (err instanceof AgeFormatError || err instanceof AgePayloadError) {
    const truncated = /truncated/.test(err.message);
    return new UserError(`age archive ${label} is damaged: ${err.message}`, ExitCode.CORRUPT, {
      problem: truncated ? "truncated" : "corrupt",
    });
  }
  return err;
}
