/**
 * Audit key resolution and loading. The key lives outside `.sdd/` (it must not travel with a
 * backup), is 64 hex characters whose ASCII bytes are the HMAC key (Python compatible), and is
 * created only by commands that write audit events: a verifier that minted a key on a fresh host
 * would make every restored entry "fail" (the Python original's bug). And a writer creates it only
 * while the audit log has no entries (`loadAuditKeyForWriting`): once a chain exists, a new key
 * would sign the next entry with a key that `audit verify` does not have, and break the chain
 * there for good (the key was only not found: another HOME, an unset variable).
 */
import { randomBytes } from "node:crypto";
import { chmod, readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { durableCreate, durableMkdir } from "../workspace/durable.js";
import { isFolder } from "../workspace/layout.js";
import { auditLogHasEntries } from "./files.js";

export type AuditKeySource = "--key-file" | "$BERNSTEIN_AUDIT_KEY_PATH" | "$XDG_STATE_HOME" | "$HOME";

export interface AuditKeyLocation {
  path: string;
  source: AuditKeySource;
  /** Every rule consulted, in order, for a "looked at" message. */
  consulted: string[];
}

export interface AuditKeyPathOptions {
  keyFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The key path: `--key-file`, then `$BERNSTEIN_AUDIT_KEY_PATH`, then
 * `$XDG_STATE_HOME/bernstein/audit.key`, then `~/.local/state/bernstein/audit.key`.
 * The first rule that is set wins (as in Python); an unset or empty variable is skipped.
 */
export function resolveAuditKeyPath(opts: AuditKeyPathOptions = {}): AuditKeyLocation {
  const env = opts.env ?? process.env;
  const consulted: string[] = [];
  if (opts.keyFile) {
    consulted.push(`--key-file ${opts.keyFile}`);
    return { path: path.resolve(opts.keyFile), source: "--key-file", consulted };
  }
  consulted.push("--key-file (not given)");
  const explicit = env.BERNSTEIN_AUDIT_KEY_PATH;
  if (explicit) {
    consulted.push(`$BERNSTEIN_AUDIT_KEY_PATH=${explicit}`);
    return { path: path.resolve(explicit), source: "$BERNSTEIN_AUDIT_KEY_PATH", consulted };
  }
  consulted.push("$BERNSTEIN_AUDIT_KEY_PATH (unset)");
  const xdg = env.XDG_STATE_HOME;
  if (xdg) {
    const p = path.resolve(xdg, "bernstein", "audit.key");
    consulted.push(`$XDG_STATE_HOME: ${p}`);
    return { path: p, source: "$XDG_STATE_HOME", consulted };
  }
  consulted.push("$XDG_STATE_HOME (unset)");
  const home = env.HOME || os.homedir();
  const p = path.resolve(home, ".local", "state", "bernstein", "audit.key");
  consulted.push(`~/.local/state: ${p}`);
  return { path: p, source: "$HOME", consulted };
}

export interface LoadAuditKeyOptions extends AuditKeyPathOptions {
  /** Create the key (0600, folder 0700) when missing. Only commands that write events pass true. */
  create: boolean;
}

export interface AuditKey {
  /** The HMAC key: the 64 ASCII characters of the key file. */
  key: Buffer;
  path: string;
  source: AuditKeySource;
  created: boolean;
}

const KEY_RE = /^[0-9a-fA-F]{64}$/;

/** No key file at the resolved path (and none was to be created). */
export class AuditKeyMissingError extends UserError {
  override name = "AuditKeyMissingError";
}

/**
 * A key that did not sign the log it would append to: as good as none for a writer (every entry
 * it signed would fail with the log's own key), so writers go on without the event, as with none.
 */
export class AuditKeyMismatchError extends AuditKeyMissingError {
  override name = "AuditKeyMismatchError";
}

/** Whether a key file's content is a key at all: 64 hex characters (surrounding whitespace aside). */
export function isAuditKeyText(fileContent: Buffer | string): boolean {
  return KEY_RE.test(fileContent.toString().trim());
}

/** The HMAC key a key file's content stands for: its 64 hex characters as ASCII bytes. */
export function auditKeyBytes(fileContent: Buffer | string): Buffer {
  return Buffer.from(fileContent.toString().trim(), "ascii");
}

/** Loads (or, with create, makes) the audit key; every problem is a one-line UserError. */
export async function loadAuditKey(opts: LoadAuditKeyOptions): Promise<AuditKey> {
  const loc = resolveAuditKeyPath(opts);
  let created = false;
  let st = await stat(loc.path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new UserError(`audit key ${loc.path}: ${err.message}`, ExitCode.USAGE);
  });
  if (!st) {
    if (!opts.create) {
      throw new AuditKeyMissingError(
        `audit: no audit key at ${loc.path} (looked at: ${loc.consulted.join("; ")}); ` +
          `pass --key-file FILE or set BERNSTEIN_AUDIT_KEY_PATH`,
        ExitCode.USAGE,
        { key_path: loc.path, consulted: loc.consulted },
      );
    }
    // A key path typed on the command line that leads nowhere is a typo far more often than a
    // wish for a new key folder: made there, the key would sign the chain from a place nobody
    // looks for it. The default paths and $BERNSTEIN_AUDIT_KEY_PATH (set once, kept) may make
    // their folder.
    if (loc.source === "--key-file" && !(await isFolder(path.dirname(loc.path))))
      throw new UserError(
        `--key-file ${opts.keyFile}: no folder ${path.dirname(loc.path)}; a new audit key is made only in an existing folder`,
        ExitCode.USAGE,
        { key_path: loc.path },
      );
    await createKey(loc.path);
    created = true;
    st = await stat(loc.path);
  }
  if (!st.isFile()) throw new UserError(`audit key ${loc.path} is not a regular file`, ExitCode.USAGE);
  if ((st.mode & 0o077) !== 0) {
    throw new UserError(
      `audit key ${loc.path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); ` +
        `run: chmod 600 ${loc.path}`,
      ExitCode.USAGE,
      { key_path: loc.path },
    );
  }
  const text = (await readFile(loc.path, "utf8")).trim();
  if (!isAuditKeyText(text)) {
    throw new UserError(`audit key ${loc.path} is not 64 hex characters`, ExitCode.CORRUPT, {
      key_path: loc.path,
    });
  }
  return { key: auditKeyBytes(text), path: loc.path, source: loc.source, created };
}

export interface WriterKeyOptions extends AuditKeyPathOptions {
  /** The command's own flag for the key file, if it has one (named in the message). */
  keyFileFlag?: string;
}

/**
 * The key for a command that writes audit events to the log in `auditDir`. A missing key is
 * created only while the log has no entries (the first event starts the chain with it). When
 * the log has entries and no key is found, nothing is created: AuditKeyMissingError says where
 * it looked and how to point at the key, and the caller goes on without the event.
 */
export async function loadAuditKeyForWriting(
  auditDir: string,
  opts: WriterKeyOptions = {},
): Promise<AuditKey> {
  const create = !(await auditLogHasEntries(auditDir));
  try {
    return await loadAuditKey({ ...opts, create });
  } catch (err) {
    if (create || !(err instanceof AuditKeyMissingError)) throw err;
    const loc = resolveAuditKeyPath(opts);
    const how = opts.keyFileFlag
      ? `${opts.keyFileFlag} FILE or BERNSTEIN_AUDIT_KEY_PATH=FILE`
      : "BERNSTEIN_AUDIT_KEY_PATH=FILE";
    throw new AuditKeyMissingError(
      `no audit key at ${loc.path} (resolved from ${loc.source}) and the audit log already has entries: ` +
        `a new key would break its chain, so none was created; point at the workspace's key with ${how}`,
      ExitCode.USAGE,
      { key_path: loc.path, consulted: loc.consulted },
    );
  }
}

async function createKey(file: string): Promise<void> {
  const dir = path.dirname(file);
  const existed = await stat(dir).then(
    () => true,
    () => false,
  );
  await durableMkdir(dir, 0o700);
  if (!existed) await chmod(dir, 0o700);
  try {
    await durableCreate(file, randomBytes(32).toString("hex"), 0o600);
    await chmod(file, 0o600);
  } catch (err) {
    // Another writer created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
}
