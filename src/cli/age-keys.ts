/**
 * Where age keys come from on the command line: `--identity-file F` (or
 * `$BERNSTEIN_DR_IDENTITY_FILE`) for reading archives, `--recipient age1...` (repeatable) and
 * `--recipients-file F` for writing them. Both files use age's own format: one key per line,
 * `#` comments and blank lines ignored, so files made by `age-keygen` work as they are.
 *
 * An identity file is a secret: one that group or others may read is refused (as password and
 * audit-key files are), checked on the handle that is read.
 *
 * The key checks (dr/age/keys.js and its curves) load only when a key is given: every `dr`
 * command registers these options, and most runs name no age key.
 */
import type { Command } from "../vendor/commander.js";
import { readProtectedFile, resolveEncryptPassword, type PasswordFlags } from "./password.js";
import { ExitCode, UserError } from "../errors/errors.js";

export const IDENTITY_FILE_ENV = "BERNSTEIN_DR_IDENTITY_FILE";

export interface RecipientFlags {
  recipient?: string[];
  recipientsFile?: string;
}

/** The keys of an age key file: its lines without comments and blanks, with line numbers. */
function keyLines(text: string): { line: number; key: string }[] {
  return text
    .split(/\r?\n/)
    .map((l, i) => ({ line: i + 1, key: l.trim() }))
    .filter((l) => l.key !== "" && !l.key.startsWith("#"));
}

const readKeyFile = (file: string, what: string, secret: boolean): Promise<string> =>
  readProtectedFile(file, what, secret);

/** The identities of an identity file (at least one; every line must be one). */
export async function readIdentityFile(file: string, what = `--identity-file ${file}`): Promise<string[]> {
  const lines = keyLines(await readKeyFile(file, what, true));
  const { isIdentity } = await import("../dr/age/keys.js");
  for (const l of lines) {
    // Never echo the line: it may be a secret key with a typo.
    if (!(await isIdentity(l.key))) {
      throw new UserError(
        `${what}: line ${l.line} is not an age identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)`,
        ExitCode.USAGE,
      );
    }
  }
  if (lines.length === 0) throw new UserError(`${what}: holds no identity`, ExitCode.USAGE);
  return lines.map((l) => l.key);
}

/** The identities from `--identity-file` or `$BERNSTEIN_DR_IDENTITY_FILE`; undefined when neither. */
export async function resolveIdentities(
  identityFile: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string[] | undefined> {
  if (identityFile !== undefined) return readIdentityFile(identityFile);
  const fromEnv = env[IDENTITY_FILE_ENV];
  if (fromEnv) return readIdentityFile(fromEnv, `${IDENTITY_FILE_ENV}=${fromEnv}`);
  return undefined;
}

/**
 * Refuses (exit 4) identities none of which is one of `recipients`, before anything is written:
 * what a drill or `dr backup --verify` writes to them, they could not read back. `why` starts
 * the line ("a drill restores what it backs up").
 */
export async function checkIdentitiesOpen(
  identities: readonly string[],
  recipients: readonly string[],
  why: string,
): Promise<void> {
  const { noIdentityOpens, recipientFingerprint, recipientOf } = await import("../dr/age/keys.js");
  for (const identity of identities) if (recipients.includes(await recipientOf(identity))) return;
  throw new UserError(
    `${why}: ${noIdentityOpens(identities.length, recipients.map(recipientFingerprint).join(", "))}`,
    ExitCode.BAD_PASSWORD,
    { problem: "auth" },
  );
}

/** The recipients of `--recipient` and `--recipients-file` together, each checked (exit 2 naming a bad one). */
export async function resolveRecipients(opts: RecipientFlags): Promise<string[]> {
  const all = [...(opts.recipient ?? [])];
  if (opts.recipientsFile !== undefined) {
    const what = `--recipients-file ${opts.recipientsFile}`;
    const lines = keyLines(await readKeyFile(opts.recipientsFile, what, false));
    if (lines.length === 0) throw new UserError(`${what}: holds no recipient`, ExitCode.USAGE);
    all.push(...lines.map((l) => l.key));
  }
  const unique = [...new Set(all)];
  if (unique.length === 0) return unique;
  const { BadRecipientError, checkRecipients } = await import("../dr/age/keys.js");
  try {
    await checkRecipients(unique);
  } catch (err) {
    if (err instanceof BadRecipientError) {
      const hint = err.recipient.startsWith("AGE-SECRET-KEY")
        ? " (that is a secret identity, not a recipient)"
        : "";
      throw new UserError(
        `not a valid age recipient: ${hint ? "AGE-SECRET-KEY-..." : err.recipient}${hint}`,
        ExitCode.USAGE,
      );
    }
    throw err;
  }
  return unique;
}

/** Commander's collector for a repeatable option. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function addRecipientOptions(cmd: Command): Command {
  return cmd
    .option(
      "--recipient <age1...>",
      "encrypt to this age recipient (repeatable; age1pq1... is the post-quantum hybrid): NAME.tar.gz.age",
      collect,
    )
    .option(
      "--recipients-file <file>",
      "encrypt to the age recipients in this file (one per line, # comments)",
    )
    .option("--i-know-it-is-plain", "allow --plain to an s3:// destination (an off-site plaintext copy)");
}

export function addIdentityOption(cmd: Command): Command {
  return cmd.option(
    "--identity-file <file>",
    `age identities for .age archives (mode 0600; or $${IDENTITY_FILE_ENV})`,
  );
}

export interface WriteKeyFlags extends PasswordFlags, RecipientFlags {
  encrypt?: boolean;
  plain?: boolean;
  iKnowItIsPlain?: boolean;
}

export interface WriteKeys {
  password?: string;
  recipients?: string[];
  warnings: string[];
}

/**
 * The keys of a command that writes a backup. Recipients (flags or the configuration file)
 * encrypt to age and take precedence over a password; otherwise `--encrypt` and the password
 * decide as before. A plain backup asked for with `--plain` to an s3:// destination needs
 * `--i-know-it-is-plain`: an off-site plaintext copy must never happen by accident.
 */
export async function resolveWriteKeys(
  opts: WriteKeyFlags,
  destination: string | undefined,
): Promise<WriteKeys> {
  if (opts.plain && (opts.recipient?.length || opts.recipientsFile)) {
    throw new UserError("--plain and --recipient/--recipients-file contradict each other", ExitCode.USAGE);
  }
  const recipients = await resolveRecipients(opts);
  if (recipients.length) return { recipients, warnings: [] };
  const r = await resolveEncryptPassword(opts, opts.encrypt);
  if (opts.plain && destination?.startsWith("s3://") && !opts.iKnowItIsPlain) {
    throw new UserError(
      `--plain to ${destination} would put a plaintext copy of the state off-site; add --i-know-it-is-plain if that is meant`,
      ExitCode.USAGE,
    );
  }
  return { password: opts.encrypt ? r.password : undefined, warnings: r.warnings };
}
