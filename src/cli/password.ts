/**
 * The backup password: `--password`, `--password-file F` or `$BERNSTEIN_DR_PASSWORD`
 * (a file's single trailing newline is dropped). Empty passwords are refused.
 *
 * Where it came from matters: `--password` is visible to every user in `ps` (kept for the
 * Python CLI's scripts, with a warning); a password file readable by group or others is refused
 * as token and audit-key files are; and a password given explicitly to a backup without
 * `--encrypt` is a mistake that would have written a plain archive.
 */
import { open } from "node:fs/promises";
import { PASSWORD_ENV } from "../config/settings.js";
import { ExitCode, UserError } from "../errors/errors.js";

export { PASSWORD_ENV };

/** The flag that gave the password, or the name of the environment variable it came from. */

export type PasswordSource = "--password" | "--password-file" | typeof PASSWORD_ENV | (string & {});

export interface PasswordFlags {
  password?: string;
  passwordFile?: string;
  /**
   * Set with `password` when the configuration file's `backup.password_env` filled it: the name of
   * that variable. Such a password never was on the command line, so it carries no argv warning.
   */
  passwordEnv?: string;
}

export interface ResolvedPassword {
  password?: string;
  /** Which of the three gave it (undefined: none did). */
  source?: PasswordSource;
  /** One line each, for stderr (never the --json document): what the user should know. */
  warnings: string[];
}

const ARGV_WARNING =
  "--password is visible to other users of this machine (ps, /proc); use --password-file FILE (mode 0600) or " +
  PASSWORD_ENV;

/** The password and its source; reads and checks a password file. */
export async function resolvePassword(
  opts: PasswordFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedPassword> {
  if (opts.password !== undefined && opts.passwordFile !== undefined) {
    throw new UserError("pass either --password or --password-file, not both", ExitCode.USAGE);
  }
  let r: ResolvedPassword;
  if (opts.password !== undefined && opts.passwordEnv !== undefined)
    r = { password: opts.password, source: opts.passwordEnv, warnings: [] };
  else if (opts.password !== undefined)
    r = { password: opts.password, source: "--password", warnings: [ARGV_WARNING] };
  else if (opts.passwordFile !== undefined)
    r = { password: await readPasswordFile(opts.passwordFile), source: "--password-file", warnings: [] };
  // An empty variable is an unset one, as every other BERNSTEIN_* variable is: a service file's
  // `BERNSTEIN_DR_PASSWORD=` must not turn a plain backup into a password error.
  else if (env[PASSWORD_ENV]) r = { password: env[PASSWORD_ENV], source: PASSWORD_ENV, warnings: [] };
  else r = { warnings: [] };
  if (r.password !== undefined && r.password.length === 0)
    throw new UserError("the password is empty", ExitCode.USAGE);
  return r;
}

/**
 * Takes bernstein's own secrets (`names`: the backup password's variables, the replication
 * token's) out of this process's environment once they have been read: every process a running
 * orchestrator starts (agents, their tools, git and its hooks) inherits that environment, and an
 * agent has no use for the key to the backups.
 */
export function forgetSecretEnv(
  names: readonly (string | undefined)[],
  env: NodeJS.ProcessEnv = process.env,
): void {
  for (const name of names) if (name !== undefined) delete env[name];
}

/** Reads a password file (its one trailing newline dropped), refused when others may read it. */
async function readPasswordFile(file: string): Promise<string> {
  return (await readProtectedFile(file, `--password-file ${file}`)).replace(/\r?\n$/, "");
}

/**
 * Reads a key or password file; with `secret`, refuses one that group or others may read
 * (checked on the handle that is read, so the path cannot change in between). Pipes
 * (`--password-file <(...)`) have no file at rest to protect and are read as they are.
 * `what` names the file in messages.
 */
export async function readProtectedFile(file: string, what: string, secret = true): Promise<string> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      `${what}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`,
      ExitCode.USAGE,
    );
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new UserError(`${what}: is a folder, not a file`, ExitCode.USAGE);
    if (secret && st.isFile() && (st.mode & 0o077) !== 0) {
      throw new UserError(
        `${what} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
        ExitCode.USAGE,
      );
    }
    return await fh.readFile("utf8");
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${what}: ${(err as Error).message}`, ExitCode.USAGE);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** The password, which `needed` makes mandatory (a usage error naming `flag` and why). */
async function requirePassword(
  opts: PasswordFlags,
  needed: boolean | undefined,
  flag: string,
  why = "",
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedPassword> {
  const r = await resolvePassword(opts, env);
  if (needed && r.password === undefined) {
    throw new UserError(
      `${flag} needs a password: --password, --password-file or ${PASSWORD_ENV}` +
        `${env[PASSWORD_ENV] === "" ? ` (${PASSWORD_ENV} is set but empty)` : ""}${why}`,
      ExitCode.USAGE,
    );
  }
  return r;
}

/**
 * The password for a command that writes a backup (`dr backup`, `dr schedule`, `dr drill`).
 * `encrypt` is whether this backup is encrypted (the `--encrypt` flag, or a default that says
 * so). Encrypting without a password is a usage error raised before anything is written; so is
 * a password given on the command line (`--password`, `--password-file`) to a backup that is not
 * encrypted, which would otherwise write a plain archive the user believes is encrypted. A
 * password from the environment alone is not a request to encrypt, but the warnings say that
 * the backup is plain.
 */
export async function resolveEncryptPassword(
  opts: PasswordFlags,
  encrypt: boolean | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedPassword> {
  const r = await requirePassword(
    opts,
    encrypt,
    "--encrypt",
    " (a random key could never be recovered)",
    env,
  );
  if (encrypt) return r;
  if (r.source === "--password" || r.source === "--password-file") {
    throw new UserError(
      `${r.source} without --encrypt: the backup would not be encrypted; add --encrypt (or leave out ${r.source})`,
      ExitCode.USAGE,
    );
  }
  if (r.source === PASSWORD_ENV) {
    return {
      warnings: [
        ...r.warnings,
        `${PASSWORD_ENV} is set but --encrypt was not given: this backup is NOT encrypted`,
      ],
    };
  }
  return r;
}

/** The password for a command that reads an archive: with `decrypt`, a missing one is a usage error. */
export function resolveDecryptPassword(
  opts: PasswordFlags,
  decrypt: boolean | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedPassword> {
  return requirePassword(opts, decrypt, "--decrypt", "", env);
}
