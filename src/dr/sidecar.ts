/**
 * `<archive>.sha256`, written beside every local backup in `sha256sum` format
 * (`<64 hex>  <file name>`), so `sha256sum -c` checks it too.
 *
 * Why: the archive's own checks (seal, gzip CRC, Fernet HMAC) catch every damaged byte, but
 * damage to the 16-byte salt or the first Fernet block of an encrypted archive looks exactly
 * like a wrong password: either way the derived key is wrong. With the recorded sha256 the two
 * are told apart. Restore, dry-run and verify read the sidecar when it is there.
 */
import { createHash } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { durableUnlink, stageFile, type StagedFile } from "../workspace/durable.js";

export const sidecarPath = (archive: string): string => `${archive}.sha256`;

const LINE = /^([0-9a-f]{64}) [ *](.+)\n?$/;

/**
 * The sha256 of the file `archive`, read through one reused 1 MiB buffer: a stream's chunks
 * would wait for the garbage collector and add tens of MB to the peak RSS on a large archive.
 */
export async function sha256OfFile(archive: string): Promise<string> {
  const hash = createHash("sha256");
  const fh = await open(archive, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return hash.digest("hex");
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

/** Writes (atomically, durably) the sidecar of `archive`. */
export async function writeSidecar(archive: string, sha256: string): Promise<void> {
  await (await stageSidecar(archive, sha256)).commit();
}

/**
 * The sidecar of `archive` written under a temp name, to be put in place once the archive is: a
 * disk too full for it then fails the backup before the archive appears.
 */
export function stageSidecar(archive: string, sha256: string): Promise<StagedFile> {
  return stageFile(sidecarPath(archive), `${sha256}  ${path.basename(archive)}\n`, { mode: 0o644 });
}

/**
 * Removes the sidecar of an archive about to be replaced: until the new one is written, no
 * sidecar is better than one that names the old archive's sha256.
 */
export async function removeSidecar(archive: string): Promise<void> {
  await durableUnlink(sidecarPath(archive)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

/** The sha256 the sidecar of `archive` records, or undefined when there is none. */
export async function readSidecar(archive: string): Promise<{ sha256: string; file: string } | undefined> {
  const file = sidecarPath(archive);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const m = LINE.exec(text);
  if (!m || m[2] !== path.basename(archive)) {
    throw new UserError(
      `${file} is not a sha256sum line for ${path.basename(archive)}; fix or remove it`,
      ExitCode.USAGE,
    );
  }
  return { sha256: m[1]!, file };
}
