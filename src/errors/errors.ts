/**
 * Exit codes and the error type for failures a user can cause.
 * A UserError is printed as one line (no stack) and exits with its code.
 */
export const ExitCode = {
  OK: 0,
  /** A check ran and found a problem (verification failed). */
  CHECK_FAILED: 1,
  /** Usage or input error: bad flags, missing workspace, unknown run, missing file. */
  USAGE: 2,
  /** The workspace is locked by a live process (or its backlog kept changing under every read). */
  LOCKED: 3,
  /** Wrong password or authentication failure of encrypted data. */
  BAD_PASSWORD: 4,
  /**
   * An archive or state file is corrupt, truncated, hostile or inconsistent with its manifest; a
   * backup of a file whose name the restore would refuse.
   */
  CORRUPT: 5,
  /** The destination cannot be written (missing folder, not writable, disk full). */
  IO: 6,
  /** Remote storage failed after all retries (the local copy is kept). */
  REMOTE: 7,
  /** Replication: acknowledgement policy not met, or fenced by a newer epoch. */
  REPLICATION: 8,
  /** Integrity break found while operating (a WAL chain break at start). */
  INTEGRITY: 9,
  /** Interrupted by SIGINT (Ctrl-C): 128 + 2, as a shell reports a command the signal killed. */
  SIGINT: 130,
  /** Interrupted by SIGTERM: 128 + 15. */
  SIGTERM: 143,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class UserError extends Error {
  readonly exitCode: ExitCodeValue;
  /** Optional machine-readable details printed with --json. */
  readonly details?: Record<string, unknown>;
  constructor(message: string, exitCode: ExitCodeValue = ExitCode.USAGE, details?: Record<string, unknown>) {
    super(message);
    this.name = "UserError";
    this.exitCode = exitCode;
    this.details = details;
  }
}

/**
 * `err` with what a failed cleanup left behind appended to its one line; the same object, so its
 * kind (exit code, subclass) is kept for the callers that tell errors apart.
 */
export function withLeftover<E>(err: E, left: string | undefined): E {
  if (left !== undefined && err instanceof Error) err.message = `${err.message}; ${left}`;
  return err;
}

/** Wraps an error with what was being done, Litestream style ("snapshots: ..."). */
export function wrapError(context: string, err: unknown): Error {
  if (err instanceof UserError) {
    return new UserError(`${context}: ${err.message}`, err.exitCode, err.details);
  }
  const message = err instanceof Error ? err.message : String(err);
  const wrapped = new Error(`${context}: ${message}`, { cause: err });
  return wrapped;
}

/** Maps common filesystem errors a user can cause to a UserError; returns undefined otherwise. */
export function userErrorFromFs(err: unknown, what: string): UserError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
      return new UserError(`${what}: no such file or folder`, ExitCode.USAGE);
    case "EACCES":
    case "EPERM":
      return new UserError(`${what}: permission denied`, ExitCode.IO);
    case "ENOSPC":
      return new UserError(`${what}: no space left on device`, ExitCode.IO);
    case "EDQUOT":
      return new UserError(`${what}: disk quota exceeded`, ExitCode.IO);
    case "EFBIG":
      return new UserError(
        `${what}: file too large (the file system's or this process's file-size limit)`,
        ExitCode.IO,
      );
    case "EROFS":
      return new UserError(`${what}: read-only file system`, ExitCode.IO);
    case "ENAMETOOLONG":
      return new UserError(`${what}: a path is too long for this file system`, ExitCode.IO);
    case "EISDIR":
      return new UserError(`${what}: is a folder, expected a file`, ExitCode.USAGE);
    case "ENOTDIR":
      return new UserError(`${what}: not a folder`, ExitCode.USAGE);
    default:
      return undefined;
  }
}

/**
 * The failures of writing that the user can fix on their side (disk full, quota, permissions,
 * read-only file system, I/O error) as exit-6 UserErrors; undefined for anything else.
 */
export function ioError(what: string, err: unknown): UserError | undefined {
  if ((err as NodeJS.ErrnoException | undefined)?.code === "EIO")
    return new UserError(`${what}: I/O error`, ExitCode.IO);
  const mapped = userErrorFromFs(err, what);
  return mapped?.exitCode === ExitCode.IO ? mapped : undefined;
}

/**
 * A failure to create or write something at a place the user chose (a backup's destination, a
 * restore's target): exit 6 whatever the file-system error, since the fix is on the user's side
 * of the destination. ENOENT in an existing folder means the file system refuses new entries
 * there (/proc, /sys). Undefined for errors that are not file-system errors.
 */
export function destinationError(what: string, err: unknown): UserError | undefined {
  const io = ioError(what, err);
  if (io) return io;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return undefined;
  if (code === "ENOENT")
    return new UserError(`${what}: the file system refuses to create it (ENOENT)`, ExitCode.IO);
  return new UserError(userErrorFromFs(err, what)?.message ?? `${what}: ${code}`, ExitCode.IO);
}
