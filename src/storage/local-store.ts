/**
 * BackupStore on a local folder (a mounted disk, NFS, a USB drive). Writes are atomic and
 * durable through src/workspace/durable.ts: the bytes go to a temp file in the same folder,
 * are fsynced, then renamed into place and the folder fsynced. User metadata lives in a hidden
 * sidecar `.<key>.meta.json` written before the data file appears.
 */
import { createHash } from "node:crypto";
import { open, readdir, readFile, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { ExitCode, UserError, userErrorFromFs } from "../errors/errors.js";
import {
  durableMkdir,
  durableRename,
  fsyncDir,
  fsyncHandle,
  tempPathFor,
  writeAllAt,
} from "../workspace/durable.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import type { BackupStore, ByteRange, ObjectInfo, PutOptions, PutResult, ReadOptions } from "./store.js";
import { shown } from "../workspace/shown-path.js";

/** A new file holding `metadata` as one JSON line, fsynced (not yet renamed into place). */
async function writeSynced(file: string, metadata: Record<string, string>): Promise<void> {
  const fh = await open(file, "wx", 0o644);
  try {
    await fh.writeFile(JSON.stringify(metadata) + "\n");
    await fsyncHandle(fh);
  } finally {
    await fh.close();
  }
}

function checkKey(key: string): void {
  if (key === "" || key.includes("/") || key.includes("\\") || key.startsWith(".")) {
    throw new UserError(`local store: invalid name "${key}"`, ExitCode.USAGE);
  }
}

export class LocalStore implements BackupStore {
  constructor(readonly root: string) {}

  describe(key: string): string {
    return path.join(this.root, key);
  }

  private metaPath(key: string): string {
    return path.join(this.root, `.${key}.meta.json`);
  }

  async put(key: string, source: Readable, options: PutOptions = {}): Promise<PutResult> {
    checkKey(key);
    const target = path.join(this.root, key);
    try {
      await durableMkdir(this.root);
    } catch (err) {
      throw userErrorFromFs(err, `create ${this.root}`) ?? err;
    }
    const tmp = tempPathFor(target);
    const metaTmp = tempPathFor(this.metaPath(key));
    // Bytes the caller hashed in its own memory are not hashed again (PutOptions.sha256OfSource).
    const hash = options.sha256OfSource && options.sha256 !== undefined ? undefined : createHash("sha256");
    let size = 0;
    const interrupt = cleanupOnInterrupt(`the partial copy ${shown(tmp)}`, () =>
      Promise.all([rm(tmp, { force: true }), rm(metaTmp, { force: true })]).then(() => {}),
    );
    const fh = await open(tmp, "wx", 0o600).catch(async (err: unknown) => {
      await interrupt.release();
      throw userErrorFromFs(err, `write ${this.root}`) ?? err;
    });
    try {
      let sha256: string;
      try {
        for await (const chunk of source) {
          const buf = chunk as Buffer;
          hash?.update(buf);
          await writeAllAt(fh, buf, size);
          size += buf.length;
          options.onProgress?.(size);
        }
        sha256 = hash?.digest("hex") ?? options.sha256!;
        if (options.sha256 !== undefined && options.sha256 !== sha256) {
          throw new UserError(
            `${target}: written bytes have sha256 ${sha256}, expected ${options.sha256}`,
            ExitCode.CORRUPT,
          );
        }
        if (options.size !== undefined && options.size !== size)
          throw new UserError(`${target}: wrote ${size} bytes, expected ${options.size}`, ExitCode.CORRUPT);
        // The bytes and the sidecar fsynced together (one journal commit can carry both), then
        // the sidecar renamed into place and made durable before the data file appears.
        await Promise.all([fsyncHandle(fh), writeSynced(metaTmp, { ...options.metadata, sha256 })]);
      } finally {
        await fh.close();
      }
      await interrupt.release();
      await durableRename(metaTmp, this.metaPath(key));
      await durableRename(tmp, target);
      return { key, size, sha256, retries: 0 };
    } catch (err) {
      await Promise.all([unlink(tmp).catch(() => {}), unlink(metaTmp).catch(() => {})]);
      await interrupt.release();
      throw userErrorFromFs(err, `write ${target}`) ?? err;
    }
  }

  async get(key: string, range?: ByteRange, options: ReadOptions = {}): Promise<Readable> {
    checkKey(key);
    options.signal?.throwIfAborted();
    const file = path.join(this.root, key);
    try {
      const fh = await open(file, "r");
      const end = range?.end === undefined ? undefined : range.end - 1;
      return fh.createReadStream({
        autoClose: true,
        start: range?.start,
        end,
        ...(options.chunkBytes ? { highWaterMark: options.chunkBytes } : {}),
      });
    } catch (err) {
      throw userErrorFromFs(err, file) ?? err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    let st;
    try {
      st = await stat(path.join(this.root, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw userErrorFromFs(err, this.describe(key)) ?? err;
    }
    if (!st.isFile()) return undefined;
    let metadata: Record<string, string> = {};
    try {
      metadata = JSON.parse(await readFile(this.metaPath(key), "utf8")) as Record<string, string>;
    } catch {
      // No sidecar (a file copied in by hand): no metadata.
    }
    return { key, size: st.size, lastModified: st.mtime, metadata };
  }

  async list(prefix = ""): Promise<ObjectInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      throw userErrorFromFs(err, this.root) ?? err;
    }
    const out: ObjectInfo[] = [];
    for (const name of names.sort()) {
      if (name.startsWith(".") || !name.startsWith(prefix)) continue;
      const st = await stat(path.join(this.root, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ key: name, size: st.size, lastModified: st.mtime, metadata: {} });
    }
    return out;
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    let removed = false;
    // The data file first: a sidecar left alone by a crash names nothing (list and head skip it).
    for (const file of [path.join(this.root, key), this.metaPath(key)]) {
      try {
        await unlink(file);
        removed = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw userErrorFromFs(err, file) ?? err;
      }
    }
    // One sync of the folder makes both removals durable.
    if (removed)
      await fsyncDir(this.root).catch((err: unknown) => {
        throw userErrorFromFs(err, this.root) ?? err;
      });
  }
}
