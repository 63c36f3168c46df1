/**
 * Re-encrypting a password-encrypted (Fernet, `.enc`) archive, streaming: with a new password
 * (same name), or to age recipients (`NAME.tar.gz.age`, and the `.enc` goes). Fernet has no
 * header to rewrite, so every byte is decrypted and encrypted again, into a temp file beside
 * the archive; the old one is replaced only after the Fernet HMAC of the old archive verified
 * and the new file, read back, decrypts to the same bytes (the same sha256 of the `.tar.gz`).
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { ExitCode, UserError, ioError } from "../errors/errors.js";
import {
  durableRename,
  durableUnlink,
  writeAllAt,
  fsyncDir,
  fsyncHandle,
  tempPathFor,
  type StagedFile,
} from "../workspace/durable.js";
import { cleanupUntilNoReturn, interruptInProgress } from "../workspace/interrupt.js";
import { crashPoint } from "../state/decisions.js";
import { AgeDecryptor } from "./age/decrypt.js";
import { AgeEncryptor } from "./age/encrypt.js";
import { backupPath } from "./backup.js";
import { FernetAuthError, FernetDecryptor, FernetEncryptor, FernetFormatError } from "./fernet.js";
import { authFailure } from "./archive-error.js";
import { readSidecar, removeSidecar, stageSidecar } from "./sidecar.js";
import { shown } from "../workspace/shown-path.js";

export type ReencryptTarget = { password: string } | { recipients: readonly string[] };

export interface ReencryptResult {
  path: string;
  /** The archive that was replaced (the same path unless converted to age). */
  replaced: string;
  sha256: string;
  size_bytes: number;
}

interface Encryptor {
  update(plain: Buffer): Buffer | Buffer[];
  final(): Buffer | Buffer[];
}
const list = (b: Buffer | Buffer[]): Buffer[] => (Array.isArray(b) ? b : [b]);

/** Streams `file` through `transform` (which returns what to write) into `fh`; sha256 of what was written. */
async function streamInto(
  file: string,
  fh: Awaited<ReturnType<typeof open>>,
  step: (chunk: Buffer) => Promise<Buffer[]>,
  end: () => Buffer[],
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  const write = async (parts: Buffer[]): Promise<void> => {
    for (const p of parts) {
      hash.update(p);
      await writeAllAt(fh, p, size);
      size += p.length;
    }
  };
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }))
    await write(await step(chunk as Buffer));
  await write(end());
  return { sha256: hash.digest("hex"), size };
}

/** What was read of the archive, for telling a wrong password from damage (authFailure). */
interface ReadEvidence {
  archive: Hash;
  plainHead: Buffer;
}

async function fernetFailure(file: string, err: unknown, read: ReadEvidence): Promise<unknown> {
  if (err instanceof FernetAuthError) {
    const sidecar = await readSidecar(file);
    return authFailure({
      label: file,
      actualSha256: read.archive.digest("hex"),
      expectSha256: sidecar?.sha256,
      expectSha256From: sidecar?.file,
      plainHead: read.plainHead,
    });
  }
  if (err instanceof FernetFormatError) {
    return new UserError(`encrypted archive ${file} is damaged: ${err.message}`, ExitCode.CORRUPT);
  }
  return err;
}

/** Decrypts `file` (what we just wrote) and returns the sha256 of its plaintext. */
async function plaintextSha(
  file: string,
  open_: (c: Buffer) => Promise<Buffer[]>,
  end: () => Buffer[],
): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    for (const p of await open_(chunk as Buffer)) hash.update(p);
  }
  for (const p of end()) hash.update(p);
  return hash.digest("hex");
}

/**
 * Re-encrypts `file` and puts the new archive in place; `record` (the catalogue row, the audit
 * event) runs right after, as part of the same rekey: an interrupt past the rename waits for
 * both and says what the archive now is.
 */
export async function reencryptFernetFile<T extends { audit_warning?: string }>(
  file: string,
  password: string,
  target: ReencryptTarget,
  record: (r: ReencryptResult) => Promise<T>,
): Promise<T> {
  const toAge = "recipients" in target;
  const converted = backupPath(file.replace(/\.enc$/, ""), "age");
  const dest = toAge ? converted : file;
  const exists = (f: string): Promise<boolean> =>
    stat(f).then(
      () => true,
      () => false,
    );
  const source = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  if (!source) {
    // A conversion run again once it finished: the .enc went when the .age took its place.
    throw new UserError(
      (await exists(converted))
        ? `${file} is gone: it was converted to ${converted} already (rekey that one, with --identity-file)`
        : `${file}: no such file`,
      ExitCode.USAGE,
    );
  }
  if (dest !== file && (await exists(dest)))
    throw new UserError(`${dest} already exists; not replacing it`, ExitCode.IO);
  const encryptor: Encryptor = toAge
    ? await AgeEncryptor.create(target.recipients)
    : await FernetEncryptor.create(target.password);
  const decryptor = new FernetDecryptor(password);
  const plain: Hash = createHash("sha256");
  const read: ReadEvidence = { archive: createHash("sha256"), plainHead: Buffer.alloc(0) };
  const head = (p: Buffer): void => {
    if (read.plainHead.length < 16) read.plainHead = Buffer.concat([read.plainHead, p.subarray(0, 16)]);
  };
  const tmp = tempPathFor(dest);
  let sidecarStaged: Promise<StagedFile> | undefined;
  // The rename over the archive is the point of no return: before it, an interrupt removes the
  // temp files and the archive stays as it was.
  const cleanup = cleanupUntilNoReturn("rekey", shown(tmp), async () => {
    await unlink(tmp).catch(() => {});
    await (await sidecarStaged?.catch(() => undefined))?.discard();
  });
  const now =
    "password" in target
      ? `${shown(dest)} is re-encrypted: only the new password opens it`
      : `${shown(file)} is converted: ${shown(dest)} replaces it, opened by the new recipients' identities`;
  try {
    const fh = await open(tmp, "wx", source.mode & 0o777);
    let written: { sha256: string; size: number };
    try {
      written = await streamInto(
        file,
        fh,
        async (c) => {
          read.archive.update(c);
          const p = await decryptor.update(c);
          head(p);
          plain.update(p);
          return list(encryptor.update(p));
        },
        () => {
          const p = decryptor.final();
          head(p);
          plain.update(p);
          return [...list(encryptor.update(p)), ...list(encryptor.final())];
        },
      ).catch(async (err: unknown) => {
        throw await fernetFailure(file, err, read);
      });
      await fsyncHandle(fh);
    } finally {
      await fh.close();
    }
    const expected = plain.digest("hex");
    const readBack = await readBackSha(tmp, target, encryptor);
    if (readBack !== expected)
      throw new Error(`the re-encrypted ${tmp} does not decrypt to the archive's bytes`);
    // Written before the archive is put in place: a disk too full for it fails the rekey while
    // the archive and its sidecar are still as they were.
    sidecarStaged = stageSidecar(dest, written.sha256);
    const sidecar = await sidecarStaged;
    return await cleanup.cross(
      "the rename",
      async (passed) => {
        try {
          await removeSidecar(dest);
          await durableRename(tmp, dest);
        } catch (err) {
          await sidecar.discard();
          throw err;
        }
        passed();
        crashPoint("dr_rekey", "after_rename");
        await sidecar.commit();
        if (dest !== file) {
          await removeSidecar(file);
          await durableUnlink(file);
        }
        await fsyncDir(path.dirname(dest));
        return record({ path: dest, replaced: file, sha256: written.sha256, size_bytes: written.size });
      },
      now,
      (r) => r.audit_warning,
    );
  } catch (err) {
    // The interrupt's cleanup reports it and exits: no second line for a failure it caused.
    if (interruptInProgress()) return await new Promise<never>(() => {});
    if (!cleanup.passed) await unlink(tmp).catch(() => {});
    // A full or read-only disk can only be the new archive's (the old one is only read).
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (!cleanup.passed && (code === "ENOSPC" || code === "EDQUOT" || code === "EROFS" || code === "EFBIG"))
      throw ioError(`cannot write ${shown(dest)}`, err) ?? err;
    throw err;
  } finally {
    await cleanup.release();
  }
}

function readBackSha(tmp: string, target: ReencryptTarget, encryptor: Encryptor): Promise<string> {
  if ("recipients" in target) {
    const d = new AgeDecryptor({ fileKey: (encryptor as AgeEncryptor).fileKey });
    return plaintextSha(
      tmp,
      (c) => d.update(c),
      () => [d.final()],
    );
  }
  const d = new FernetDecryptor(target.password);
  return plaintextSha(
    tmp,
    async (c) => [await d.update(c)],
    () => [d.final()],
  );
}
