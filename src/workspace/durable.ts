/**
 * Durable write primitives. Every state write in the project goes through these:
 * a write counts as durable only after fsync of the file and, for a new or renamed
 * file, of the folder that holds it.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants as fsc, fdatasync, fdatasyncSync, fsync, writeSync } from "node:fs";
import {
  copyFile,
  link,
  open,
  readdir,
  rename,
  rmdir,
  unlink,
  mkdir,
  stat,
  type FileHandle,
} from "node:fs/promises";
import type { ChildProcessByStdio } from "node:child_process";
import type { Socket } from "node:net";
import path from "node:path";
import { ExitCode, UserError, destinationError } from "../errors/errors.js";
import { isProcessAlive } from "./process.js";

/**
 * The modes a workspace's folders and files are created with (masked further by the umask).
 * Explicit, because Node's defaults (0777, 0666) leave only the umask between a local user and the
 * backlog `start` runs: under `umask 000` anyone could drop a task there. Readable by all (what the
 * Python original's makedirs gives under the usual umask 022), written only by the owner. Secrets
 * ask for 0600/0700 themselves.
 */
export const FOLDER_MODE = 0o755;
export const FILE_MODE = 0o644;

/** fsync a folder so that entries created, renamed or removed in it survive power loss. */
export async function fsyncDir(dir: string | Buffer): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync a file written through `fh` (a streamed temp file before its rename, a sink's end): its
 * bytes are on disk once this resolves. The caller still owns (and closes) the handle.
 */
export async function fsyncHandle(fh: FileHandle): Promise<void> {
  await fh.sync();
}

/**
 * fdatasync a file through `fh`: every byte written to it before the call is on disk, and the
 * size that makes them readable; unlike fsync, a change of its times alone is not waited for.
 */
export async function datasyncHandle(fh: FileHandle): Promise<void> {
  await fh.datasync();
}

/** fsync a file already written and closed by someone else (e.g. a stream that owned its fd). */
export async function fsyncFile(file: string): Promise<void> {
  const fh = await open(file, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Durable truncate: cut the file open in `fh` to `size` bytes and fsync it, so the cut survives a
 * crash (what was after `size` never comes back).
 */
export async function durableTruncate(fh: FileHandle, size: number): Promise<void> {
  await fh.truncate(size);
  await fh.sync();
}

/**
 * write() all of `data`, then fdatasync(), as blocking calls on a raw fd. For a hot append path
 * (the WAL's group commit): one sync takes well under a millisecond, and the thread-pool round
 * trips of the async API would cost more than the sync itself.
 */
export function writeAndDatasyncFd(fd: number, data: Buffer): void {
  writeAllFd(fd, data);
  fdatasyncSync(fd);
}

/**
 * write() all of `data` as a blocking call, then fdatasync() on the thread pool: resolves once the
 * bytes are on disk. For a group commit under load, where the event loop has work to do (the
 * next group's entries) while the disk syncs; an append's write only copies into the page cache.
 */
export function writeThenDatasyncFd(fd: number, data: Buffer): Promise<void> {
  writeAllFd(fd, data);
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/**
 * Writes all of `data` at `position` of `fh` (null: at the file's offset, or its end with
 * O_APPEND). One write() may write less than asked (a disk that is filling up, a file-size limit)
 * and say so only in its count: the rest is written by further calls, whose failure (ENOSPC,
 * EFBIG) is then the error. A call that writes nothing fails as EIO rather than loop. Every
 * write of a FileHandle goes through here.
 */
export async function writeAllAt(
  fh: FileHandle,
  data: Uint8Array | string,
  position: number | null,
): Promise<void> {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let off = 0;
  while (off < bytes.length) {
    const at = position === null ? null : position + off;
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, at);
    if (bytesWritten === 0)
      throw Object.assign(new Error(`write() wrote nothing at byte ${at ?? off}`), { code: "EIO" });
    off += bytesWritten;
  }
}

function writeAllFd(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off, null);
}

/**
 * fsyncs (then closes) file descriptors a few dozen at a time: parallel fsyncs share journal
 * commits. `drain()` resolves once all are synced, or throws the first failure.
 */
export class FsyncPool {
  private inflight = 0;
  private waiters: (() => void)[] = [];
  private error?: Error;
  private idle?: () => void;
  constructor(private readonly limit = 32) {}
  add(fd: number): void | Promise<void> {
    if (this.error) {
      closeSync(fd);
      throw this.error;
    }
    this.inflight++;
    fsync(fd, (err) => {
      closeSync(fd);
      if (err && !this.error) this.error = err;
      this.inflight--;
      this.waiters.shift()?.();
      if (this.inflight === 0) this.idle?.();
    });
    if (this.inflight >= this.limit) return new Promise((r) => this.waiters.push(r));
  }
  async drain(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((r) => (this.idle = r));
    if (this.error) throw this.error;
  }
}

const SYNC_LOOP = 'while read -r _; do if sync -f "$1"; then echo ok; else echo failed; fi; done';

/**
 * syncfs(2) of the file system holding a folder, as many times as asked: Node has no syncfs, and
 * coreutils' `sync -f DIR` is one. Each request goes to one `sh` started by `start()`, which runs
 * `sync -f` and answers with a line. Spawning `sync` from a restore, once per early write-out
 * and once at the end, forked the whole restore process each time (its heap and staging buffers
 * mapped): milliseconds of its main thread, the one that parses and hashes. The shell is forked
 * once, from a process still small, and forks only itself after that.
 */
export class FileSystemSync {
  /** Its stdio pipes are sockets: they have ref() and unref(). */
  private readonly shell: ChildProcessByStdio<Socket, Socket, null>;
  /** Requests sent and not answered, oldest first. */
  private readonly waiting: Array<(synced: boolean) => void> = [];
  private pending = "";
  private gone = false;

  static async start(dir: string): Promise<FileSystemSync> {
    // Loaded here: only a restore needs it, and every command imports this file.
    const { spawn } = await import("node:child_process");
    const shell = spawn("sh", ["-c", SYNC_LOOP, "sh", dir], { stdio: ["pipe", "pipe", "ignore"] });
    return new FileSystemSync(shell as ChildProcessByStdio<Socket, Socket, null>);
  }

  private constructor(shell: ChildProcessByStdio<Socket, Socket, null>) {
    this.shell = shell;
    this.shell.stdout.setEncoding("utf8");
    this.shell.stdout.on("data", (text: string) => {
      this.pending += text;
      for (let nl = this.pending.indexOf("\n"); nl >= 0; nl = this.pending.indexOf("\n")) {
        const answer = this.pending.slice(0, nl);
        this.pending = this.pending.slice(nl + 1);
        this.waiting.shift()?.(answer === "ok");
        this.holdOpen();
      }
    });
    // No shell, or one that died: every request then answers false (the caller fsyncs file by file).
    const gone = (): void => {
      this.gone = true;
      for (const answer of this.waiting.splice(0)) answer(false);
      this.holdOpen();
    };
    this.shell.on("error", gone);
    this.shell.on("exit", gone);
    this.shell.stdin.on("error", gone);
    this.holdOpen();
  }

  /** Writes out everything dirty on the file system (syncfs); false when `sync -f` failed or is not there. */
  flush(): Promise<boolean> {
    if (this.gone || this.shell.stdin.writableEnded) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.holdOpen();
      this.shell.stdin.write("\n");
    });
  }

  /** Ends the shell once the requests already sent are answered (idempotent). */
  close(): void {
    if (this.gone || this.shell.stdin.writableEnded) return;
    this.shell.stdin.end();
  }

  /** An idle shell must not keep the process alive; one that owes an answer must. */
  private holdOpen(): void {
    const owed = this.waiting.length > 0;
    for (const handle of [this.shell, this.shell.stdout, this.shell.stdin])
      if (owed) handle.ref();
      else handle.unref();
  }
}

/** A temp path in the same folder as `target`, so the final rename is atomic. */
export function tempPathFor(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
}

const TEMP_NAME = /^\.(.+)\.tmp-(\d+)-[0-9a-f]+$/;

/**
 * Removes from `dir` the temp files (tempPathFor names) of writers that died before their
 * rename (SIGKILL, power loss) and whose target name `isTarget` accepts. Returns their names.
 * `names`: the folder's entries, when the caller has just read them.
 */
export async function removeDeadTemps(
  dir: string,
  isTarget: (name: string) => boolean,
  names?: string[],
): Promise<string[]> {
  const removed: string[] = [];
  for (const name of names ?? (await readdir(dir).catch(() => [] as string[]))) {
    const m = TEMP_NAME.exec(name);
    const pid = Number(m?.[2]);
    if (!m || !isTarget(m[1]!) || pid === process.pid || isProcessAlive(pid)) continue;
    await unlink(path.join(dir, name)).then(
      () => removed.push(name),
      () => {},
    );
  }
  if (removed.length) await fsyncDir(dir).catch(() => {});
  return removed;
}

export interface AtomicWriteOptions {
  mode?: number;
}

/**
 * Atomic replace: temp file in the same folder, write, fsync, rename, fsync folder.
 * Readers see either the old content or the new one, never a mix.
 */
export async function atomicWriteFile(
  target: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  await (await stageFile(target, data, options)).commit();
}

/** A file written and fsynced under a temp name beside its target, not yet in place. */
export interface StagedFile {
  /** Renames it into place and fsyncs the folder (the temp file is removed if that fails). */
  commit(): Promise<void>;
  /** Removes the temp file. */
  discard(): Promise<void>;
}

/**
 * The first half of atomicWriteFile: every byte written and fsynced, nothing in place yet. A
 * command that puts several files in place stages them all first, so that a full disk or a
 * failed write stops it before anything at the destination has changed.
 */
export async function stageFile(
  target: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<StagedFile> {
  const tmp = tempPathFor(target);
  const fh = await open(tmp, "wx", options.mode ?? FILE_MODE);
  try {
    await fh.writeFile(data);
    if (options.mode !== undefined) await fh.chmod(options.mode);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  const discard = (): Promise<void> => unlink(tmp).catch(() => {});
  return {
    async commit() {
      try {
        await rename(tmp, target);
      } catch (err) {
        await discard();
        throw err;
      }
      await fsyncDir(path.dirname(target));
    },
    discard,
  };
}

/**
 * Durable append of whole records. Creating the file fsyncs its folder too.
 * Returns once the bytes are on disk.
 */
export async function durableAppend(file: string, data: string | Uint8Array): Promise<void> {
  await appendDurably(file, typeof data === "string" ? Buffer.from(data, "utf8") : data, false);
}

/**
 * Durable append of whole lines (`lines` ends with a newline) to a JSON-lines record. When the
 * file ends in a torn line (a crash between an append's write and its newline), the new lines
 * start on a line of their own: glued to the fragment they would make one unparsable line, and the
 * record they carry would be lost with it. The fragment stays where it is, for readers to report.
 * Every append to a JSON-lines file goes through here.
 */
export async function durableAppendLines(file: string, lines: string): Promise<void> {
  await appendDurably(file, Buffer.from(lines, "utf8"), true);
}

async function appendDurably(file: string, data: Uint8Array, ownLine: boolean): Promise<void> {
  let created = false;
  let fh: FileHandle;
  // Read access only to look at the last byte; O_APPEND puts every write at the end regardless.
  const access = ownLine ? fsc.O_RDWR : fsc.O_WRONLY;
  try {
    fh = await open(file, access | fsc.O_APPEND);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    fh = await open(file, access | fsc.O_APPEND | fsc.O_CREAT, FILE_MODE);
    created = true;
  }
  try {
    const torn = ownLine && !(await endsLineAt(fh));
    await writeAllAt(fh, torn ? Buffer.concat([Buffer.from("\n"), data]) : data, null);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  if (created) await fsyncDir(path.dirname(file));
}

/** Whether the open file is empty or its last byte is a newline. */
async function endsLineAt(fh: FileHandle): Promise<boolean> {
  const size = (await fh.stat()).size;
  if (size === 0) return true;
  const b = Buffer.alloc(1);
  const { bytesRead } = await fh.read(b, 0, 1, size - 1);
  return bytesRead === 1 && b[0] === 0x0a;
}

/**
 * Creates a new file exclusively (fails with EEXIST if it exists), fsyncs it and its folder.
 * The file appears whole: it is written under a temp name and hard-linked into place, so a
 * concurrent reader (a lock taker deciding whether a lock is stale) never sees it empty.
 */
export async function durableCreate(
  file: string,
  data: string | Uint8Array,
  mode = FILE_MODE,
): Promise<void> {
  const tmp = tempPathFor(file);
  const fh = await open(tmp, "wx", mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, file);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await fsyncDir(path.dirname(file));
}

/**
 * A folder the user named as a destination, made when missing, or exit 6 in one line: a file in
 * its place ("it is a file, not a folder", not mkdir's EEXIST), a file system that refuses new
 * entries (/proc), a read-only one. `what` names it as the user gave it ("--to DIR").
 */
export async function makeDestinationFolder(dir: string, what: string): Promise<void> {
  await refuseFileAsFolder(dir, what);
  await durableMkdir(dir).catch((err: unknown) => {
    throw destinationError(what, err) ?? err;
  });
}

/** What makeDestinationFolder refuses before it creates anything (a dry run's check): a file in the folder's place. */
export async function refuseFileAsFolder(dir: string, what: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (st && !st.isDirectory()) throw new UserError(`${what}: it is a file, not a folder`, ExitCode.IO);
}

/**
 * mkdir -p that fsyncs every folder it creates and the parent of each, so new folders survive a
 * crash. Node's own recursive mkdir is not used: where a file system refuses new entries with
 * ENOENT although the parent exists (/proc, /sys) it retries forever at full CPU; here each
 * missing folder is created once, from the nearest existing one down, and the first refusal is
 * thrown as the kernel reported it. Returns the folders it created, outermost first.
 */
export async function durableMkdir(dir: string, mode = FOLDER_MODE): Promise<string[]> {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  for (let cur = abs; ; cur = path.dirname(cur)) {
    const st = await stat(cur).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
      throw err;
    });
    // A file in the way: the mkdir below fails with the kernel's own EEXIST or ENOTDIR.
    if (st) {
      if (!st.isDirectory() && missing.length === 0) await mkdir(abs, { mode });
      break;
    }
    missing.unshift(cur);
    if (path.dirname(cur) === cur) break;
  }
  if (missing.length === 0) return [];
  const made: string[] = [];
  for (const folder of missing) {
    await mkdir(folder, { mode }).then(
      () => made.push(folder),
      (err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err; // made meanwhile by another writer: fine
      },
    );
  }
  // fsync from the first created folder's parent down to the leaf.
  await fsyncDir(path.dirname(missing[0]!));
  for (const folder of missing) await fsyncDir(folder);
  return made;
}

/**
 * Removes `folders` (as durableMkdir returns them, outermost first) from the deepest up, while
 * each is empty: what an operation made for itself and no longer needs. Stops at the first that
 * cannot go (something else was put in it); never throws.
 */
export async function removeEmptyFolders(folders: readonly string[]): Promise<void> {
  let removed: string | undefined;
  for (const folder of [...folders].reverse()) {
    try {
      await rmdir(folder);
    } catch {
      break;
    }
    removed = folder;
  }
  if (removed) await fsyncDir(path.dirname(removed)).catch(() => {});
}

/** Durable rename: rename, then fsync both folders (once when they are the same). */
export async function durableRename(from: string, to: string): Promise<void> {
  await rename(from, to);
  const a = path.dirname(path.resolve(from));
  const b = path.dirname(path.resolve(to));
  await fsyncDir(b);
  if (a !== b) await fsyncDir(a);
}

/**
 * Durable rename that never replaces an existing `to` (fails with EEXIST instead): a hard link
 * (which the kernel refuses atomically when `to` exists) then the removal of `from`, folders
 * fsynced. A crash in between leaves `from` as a second name of the same file; it is a temp file
 * of a dead writer then (removeDeadTemps). Where the file system has no hard links, a check then
 * a rename (two writers racing for one name there can still replace each other).
 */
export async function durableRenameNoReplace(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw err;
    const taken = await stat(to).then(
      () => true,
      () => false,
    );
    if (taken) {
      throw Object.assign(new Error(`EEXIST: file already exists, rename '${from}' -> '${to}'`), {
        code: "EEXIST",
        path: to,
      });
    }
    await durableRename(from, to);
    return;
  }
  await unlink(from);
  const a = path.dirname(path.resolve(from));
  const b = path.dirname(path.resolve(to));
  await fsyncDir(b);
  if (a !== b) await fsyncDir(a);
}

/**
 * Atomic copy: copy to a temp file beside `to`, fsync it, rename it over `to`, fsync the folder.
 * Readers of `to` see the old file or the whole copy.
 */
export async function durableCopy(from: string, to: string): Promise<void> {
  const tmp = tempPathFor(to);
  await copyFile(from, tmp);
  await fsyncFile(tmp);
  await durableRename(tmp, to);
}

/** Durable unlink: remove, then fsync the folder. */
export async function durableUnlink(file: string): Promise<void> {
  await unlink(file);
  await fsyncDir(path.dirname(file));
}
