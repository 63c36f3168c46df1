/**
 * The backup password: `--password`, `--password-file F` or `$BERNSTEIN_DR_PASSWORD`
 * (a file's single trailing newline is dropped). Empty passwords are refused.
 */
import { readFile } from "node:fs/promises";
import { ExitCode, UserError } from "../cli/errors.js";

export const PASSWORD_ENV = "BERNSTEIN_DR_PASSWORD";

export async function resolvePassword(opts: {
  password?: string;
  passwordFile?: string;
}): Promise<string | undefined> {
  if (opts.password !== undefined && opts.passwordFile !== undefined) {
    throw new UserError("pass either --password or --password-file, not both", ExitCode.USAGE);
  }
  let pw: string | undefined;
  if (opts.password !== undefined) pw = opts.password;
  else if (opts.passwordFile !== undefined) {
    try {
      pw = (await readFile(opts.passwordFile, "utf8")).replace(/\r?\n$/, "");
    } catch (err) {
      throw new UserError(
        `--password-file ${opts.passwordFile}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
        ExitCode.USAGE,
      );
    }
  } else if (process.env[PASSWORD_ENV] !== undefined) pw = process.env[PASSWORD_ENV];
  if (pw !== undefined && pw.length === 0) throw new UserError("the password is empty", ExitCode.USAGE);
  return pw;
}

/** The password, which `needed` makes mandatory (a usage error naming `flag` and why). */
async function requirePassword(
  opts: { password?: string; passwordFile?: string },
  needed: boolean | undefined,
  flag: string,
  why = "",
): Promise<string | undefined> {
  const password = await resolvePassword(opts);
  if (needed && password === undefined) {
    throw new UserError(
      `${flag} needs a password: --password, --password-file or ${PASSWORD_ENV}${why}`,
      ExitCode.USAGE,
    );
  }
  return password;
}

/**
 * The password for a command that may encrypt: with `encrypt`, a missing password is a usage
 * error raised before anything is written.
 */
export function resolveEncryptPassword(
  opts: { password?: string; passwordFile?: string },
  encrypt: boolean | undefined,
): Promise<string | undefined> {
  return requirePassword(opts, encrypt, "--encrypt", " (a random key could never be recovered)");
}

/** The password for a command that reads an archive: with `decrypt`, a missing one is a usage error. */
export function resolveDecryptPassword(
  opts: { password?: string; passwordFile?: string },
  decrypt: boolean | undefined,
): Promise<string | undefined> {
  return requirePassword(opts, decrypt, "--decrypt");
}
