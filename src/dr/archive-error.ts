/**
 * The errors reading an archive can end in, as one-line user errors: damage found by gzip, by
 * the archive's sha256, or by Fernet authentication (a wrong password must say so, exit 4, and
 * not pass for a corrupt archive).
 */
import { ExitCode, UserError } from "../errors/errors.js";

export type ArchiveProblem = "corrupt" | "truncated" | "hostile" | "mismatch" | "bomb" | "not-archive";

/** The gzip header our writer always produces (no name, mtime 0, XFL 0, OS unix). */
export const OUR_GZIP_HEADER = Buffer.from("1f8b0800000000000003", "hex");

export function archiveError(problem: ArchiveProblem, message: string): UserError {
  return new UserError(message, ExitCode.CORRUPT, { problem });
}

export function shaMismatch(actual: string, expected: string, from: string | undefined): UserError {
  return archiveError(
    "mismatch",
    `archive is damaged or altered: its sha256 is ${actual}, not ${expected} (${from ?? "expected"})`,
  );
}

/** A zlib failure as an archive error (truncated or corrupt); anything else is passed through. */
export function zlibToArchiveError(err: unknown): UserError {
  if (err instanceof UserError) return err;
  const e = err as NodeJS.ErrnoException & { errno?: number };
  const msg = String(e?.message ?? err);
  if (/unexpected end of file/i.test(msg))
    return archiveError("truncated", "archive is truncated (gzip stream ends early)");
  if (/incorrect header check|unknown compression method|invalid/i.test(msg) && e.code !== undefined) {
    return archiveError("corrupt", `archive is corrupt (gzip: ${msg})`);
  }
  if (e?.code?.startsWith?.("Z_")) return archiveError("corrupt", `archive is corrupt (gzip: ${msg})`);
  return err as UserError;
}

/**
 * Whether decrypted bytes start like a gzip stream: the magic and method, or (when one damaged
 * base64 character garbled the first bytes through the IV) our fixed header's tail.
 */
export function decryptsToGzip(head: Buffer): boolean {
  return (
    head.subarray(0, 3).equals(OUR_GZIP_HEADER.subarray(0, 3)) ||
    (head.length >= 10 && head.subarray(4, 10).equals(OUR_GZIP_HEADER.subarray(4, 10)))
  );
}

export interface AuthFailureContext {
  label?: string;
  /** sha256 of every byte read, when the whole archive has been read. */
  actualSha256: string;
  expectSha256?: string;
  expectSha256From?: string;
  /** The first decrypted bytes. */
  plainHead: Buffer;
}

/**
 * What a failed Fernet authentication means, said as precisely as the evidence allows: with a
 * recorded sha256, damage or a wrong password for sure; without, a plaintext that still starts
 * like our gzip says the password was right and the archive was altered.
 */
export function authFailure(ctx: AuthFailureContext): UserError {
  if (ctx.expectSha256) {
    if (ctx.actualSha256 !== ctx.expectSha256)
      return shaMismatch(ctx.actualSha256, ctx.expectSha256, ctx.expectSha256From);
    return new UserError(
      `cannot decrypt ${ctx.label ?? "archive"}: wrong password (the archive is intact: its sha256 matches ${ctx.expectSha256From ?? "the recorded one"})`,
      ExitCode.BAD_PASSWORD,
      { problem: "auth" },
    );
  }
  // With a wrong key the first block decrypts to noise; with the right key a damaged or
  // truncated token still decrypts to a gzip start (a 1 in 2^24 coincidence otherwise).
  if (decryptsToGzip(ctx.plainHead)) {
    return archiveError(
      "corrupt",
      `encrypted archive ${ctx.label ?? ""} was altered or truncated: it decrypts with this password but fails authentication`.replace(
        "  ",
        " ",
      ),
    );
  }
  return new UserError(
    `cannot decrypt ${ctx.label ?? "archive"}: wrong password, or the archive's first 71 bytes are damaged (no .sha256 beside it to tell which): authentication failed`,
    ExitCode.BAD_PASSWORD,
    { problem: "auth" },
  );
}
