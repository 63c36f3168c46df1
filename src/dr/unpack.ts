/**
 * Reading an archive, defensively. One streaming pass: (decrypt) → gunzip → tar → entries, with
 * every entry checked before a byte of it is handed on:
 *  - only regular files and folders; links of any kind, devices, FIFOs and unknown types are
 *    hostile;
 *  - names: no absolute paths, no drive letters, no `.`/`..`/empty components, no backslash or
 *    NUL, no duplicates, no two names equal after Unicode NFC normalization, nothing below a file;
 *  - our archives (manifest.json first, with per-file hashes): every entry is listed in the
 *    manifest with that size and mode, every listed file is present, every sha256 matches, and
 *    the decompressed stream may not grow past what the manifest's sizes allow (bomb);
 *  - archives of the Python reference (no hashes): structure is checked, files are hashed and
 *    counted, and the result says that per-file hashes were not available.
 * Encrypted archives are decrypted on the fly; nothing read from them is trusted until the
 * Fernet HMAC at the very end verifies, so a caller accepts its staging area only after this
 * function returns. When anything fails mid-way, the rest of an encrypted source is still read
 * to check the HMAC: a wrong password is reported as such (exit 4), not as a corrupt gzip.
 */
import { createHash, type Hash } from "node:crypto";
import type { TransformOptions } from "node:stream";
import { createGunzip, type ZlibOptions } from "node:zlib";
import { Header } from "tar/header";
import { Pax } from "tar/pax";
import type { HeaderData } from "tar/header";
import { ExitCode, UserError } from "../errors/errors.js";
import { tuneForShortBursts } from "./jit.js";
import { GarbageBudget } from "./memory.js";
import { SealChecker } from "./seal.js";
import { AgeArchiveDecryptor, checkKeyKind } from "./age/archive.js";
import { AGE_MAGIC, looksLikeAge } from "./age/header.js";
import {
  FernetAuthError,
  FernetDecryptor,
  FernetFormatError,
  SALT_BYTES,
  looksEncrypted,
  type KeyCache,
} from "./fernet.js";
import {
  AUDIT_KEY_ENTRY,
  MANIFEST_NAME,
  MAX_MANIFEST_BYTES,
  ManifestError,
  parseManifest,
  sha256Hex,
  type ParsedManifest,
} from "./manifest.js";

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const MAX_META_BYTES = 1024 * 1024;
/** The longest entry name accepted (staging-writer.ts relies on it). */
export const MAX_NAME_BYTES = 4000;
/** The gzip header our writer always produces (no name, mtime 0, XFL 0, OS unix). */
const OUR_GZIP_HEADER = Buffer.from("1f8b0800000000000003", "hex");

export type ArchiveProblem = "corrupt" | "truncated" | "hostile" | "mismatch" | "bomb" | "not-archive";

export function archiveError(problem: ArchiveProblem, message: string): UserError {
  return new UserError(message, ExitCode.CORRUPT, { problem });
}

export interface EntryInfo {
  path: string;
  size: number;
  mode: number;
  mtime?: Date;
}
export interface FileSink {
  write(chunk: Buffer): void | Promise<void>;
  end(): void | Promise<void>;
}
export interface ExtractHandler {
  /** Where a file's bytes go (undefined: nowhere, only hashed). Called after the entry is validated. */
  file?(entry: EntryInfo): FileSink | undefined | Promise<FileSink | undefined>;
  dir?(entry: EntryInfo): void | Promise<void>;
}

export interface ArchiveSummary {
  format: "bernstein" | "reference";
  encrypted: boolean;
  /** sha256 and size of the archive bytes as read (the encrypted file when encrypted). */
  sha256: string;
  size_bytes: number;
  /** Every regular file in the archive, manifest.json included. */
  file_count: number;
  /** Regular files in archive order. */
  files: string[];
  /** sha256 of each regular file as read (for reference archives the only hashes there are). */
  file_hashes: Map<string, string>;
  dirs: string[];
  manifest_raw: Record<string, unknown>;
  manifest_sha256: string;
  parsed: ParsedManifest;
  per_file_hashes: boolean;
  audit_key?: Buffer;
}

export interface ReadArchiveOptions {
  password?: string;
  /** age identities (`AGE-SECRET-KEY-...`) for `.age` archives. */
  identities?: readonly string[];
  /** Cache of derived keys by salt (tests and repeated reads of one archive). */
  keyCache?: KeyCache;
  /** Name of the archive for messages. */
  label?: string;
  /**
   * The archive's expected sha256 (--sha256, its `.sha256` sidecar). Archives of the Python
   * reference carry no seal, so only this sees a flipped bit that gzip cannot; for encrypted
   * archives it tells a damaged salt from a wrong password.
   */
  expectSha256?: string;
  /** Where expectSha256 came from, for messages ("--sha256", "backup.tar.gz.sha256"). */
  expectSha256From?: string;
  /** Called as the archive is read, with the bytes read so far (progress). */
  onProgress?: (bytesRead: number) => void;
}

function pathProblem(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.includes("\0")) return "NUL in name";
  if (name.startsWith("/")) return "absolute path";
  if (/^[A-Za-z]:/.test(name)) return "drive-letter path";
  if (name.includes("\\")) return "backslash in name";
  // Linux's limits (PATH_MAX, NAME_MAX); a longer name could not be created anyway.
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `name longer than ${MAX_NAME_BYTES} bytes`;
  for (const part of name.split("/")) {
    if (part === "..") return "'..' in path";
    if (part === "" || part === ".") return "non-normalized path";
    // 85 UTF-16 units are at most 255 UTF-8 bytes: only longer parts need counting.
    if (part.length > 85 && Buffer.byteLength(part) > 255) return "name component longer than 255 bytes";
  }
  return undefined;
}

/** Validates the tree shape: names, duplicates (also after NFC), nothing below a file. */
class NameGuard {
  private readonly seen = new Map<string, { type: "file" | "dir"; raw: string }>();
  check(raw: string, type: "file" | "dir"): void {
    const problem = pathProblem(raw);
    if (problem) throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: ${problem}`);
    const key = raw.normalize("NFC");
    const prior = this.seen.get(key);
    if (prior) {
      if (prior.raw === raw)
        throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: duplicate name`);
      throw archiveError(
        "hostile",
        `hostile entry ${JSON.stringify(raw)}: same name as ${JSON.stringify(prior.raw)} after Unicode normalization`,
      );
    }
    for (let cut = key.indexOf("/"); cut > 0; cut = key.indexOf("/", cut + 1)) {
      const anc = this.seen.get(key.slice(0, cut));
      if (anc?.type === "file") {
        throw archiveError(
          "hostile",
          `hostile entry ${JSON.stringify(raw)}: below the file ${JSON.stringify(anc.raw)}`,
        );
      }
    }
    this.seen.set(key, { type, raw });
  }
}

const HOSTILE_TYPES: Record<string, string> = {
  Link: "hard link",
  SymbolicLink: "symbolic link",
  CharacterDevice: "character device",
  BlockDevice: "block device",
  FIFO: "FIFO",
};

/** Memory sink with a cap (the manifest, the audit key). */
class MemorySink implements FileSink {
  private parts: Buffer[] = [];
  private n = 0;
  constructor(
    private readonly cap: number,
    private readonly what: string,
  ) {}
  write(chunk: Buffer): void {
    this.n += chunk.length;
    if (this.n > this.cap) throw archiveError("bomb", `${this.what} is larger than ${this.cap} bytes`);
    this.parts.push(Buffer.from(chunk));
  }
  end(): void {}
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

interface PendingFile {
  info: EntryInfo;
  sink?: FileSink;
  hash: Hash;
  remaining: number;
  memory?: MemorySink;
}

/**
 * The tar layer: consumes decompressed bytes, validates and dispatches entries.
 */
class TarReader {
  private state: "header" | "body" | "meta" | "pad" | "eof" = "header";
  private leftover = Buffer.alloc(0);
  private ex?: HeaderData;
  private gex?: HeaderData;
  private meta?: { kind: string; size: number; parts: Buffer[]; got: number };
  private pad = 0;
  private current?: PendingFile;
  private entryIndex = 0;
  private readonly guard = new NameGuard();
  private decompressed = 0;
  private limit = Number.POSITIVE_INFINITY;
  parsed?: ParsedManifest;
  manifestRaw?: Record<string, unknown>;
  manifestSha = "";
  gzipHeader = Buffer.alloc(0);
  readonly files: string[] = [];
  readonly dirs: string[] = [];
  readonly hashes = new Map<string, string>();
  auditKey?: Buffer;

  constructor(private readonly handler: ExtractHandler) {}

  async push(chunk: Buffer): Promise<void> {
    this.decompressed += chunk.length;
    if (this.decompressed > this.limit) {
      throw archiveError("bomb", "archive expands past the sizes its manifest lists (decompression bomb?)");
    }
    let data = chunk;
    if (this.leftover.length) {
      // Only a header block is ever split: complete it, not a copy of the whole chunk.
      const need = BLOCK - this.leftover.length;
      const block = Buffer.concat([this.leftover, chunk.subarray(0, need)]);
      this.leftover = Buffer.alloc(0);
      if (block.length < BLOCK) {
        this.leftover = block;
        return;
      }
      const r = this.header(block);
      if (r) await r;
      data = chunk.subarray(need);
    }
    let off = 0;
    while (off < data.length) {
      const avail = data.length - off;
      switch (this.state) {
        case "header": {
          if (avail < BLOCK) {
            this.leftover = Buffer.from(data.subarray(off));
            return;
          }
          const r = this.header(data.subarray(off, off + BLOCK));
          off += BLOCK;
          if (r) await r;
          break;
        }
        case "body": {
          const cur = this.current!;
          const n = Math.min(cur.remaining, avail);
          const piece = data.subarray(off, off + n);
          cur.hash.update(piece);
          if (cur.sink) {
            const r = cur.sink.write(piece);
            if (r) await r;
          }
          cur.remaining -= n;
          off += n;
          if (cur.remaining === 0) {
            const r = this.finishFile();
            if (r) await r;
          }
          break;
        }
        case "meta": {
          const m = this.meta!;
          const n = Math.min(m.size - m.got, avail);
          m.parts.push(Buffer.from(data.subarray(off, off + n)));
          m.got += n;
          off += n;
          if (m.got === m.size) this.finishMeta();
          break;
        }
        case "pad": {
          const n = Math.min(this.pad, avail);
          this.pad -= n;
          off += n;
          if (this.pad === 0) this.state = "header";
          break;
        }
        case "eof": {
          // After the end-of-archive block only zero padding may follow.
          for (let i = off; i < data.length; i++) {
            if (data[i] !== 0) throw archiveError("corrupt", "data after the end of the archive");
          }
          off = data.length;
          break;
        }
      }
      if (off === data.length) data = Buffer.alloc(0);
    }
  }

  private skipPadding(size: number): void {
    this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
    this.state = this.pad ? "pad" : "header";
  }

  /**
   * Validates and dispatches one header block. Returns a promise only when the handler does:
   * most entries complete synchronously, and an async function per entry would cost two
   * promises and a microtask hop for each of thousands of files.
   */
  private header(block: Buffer): void | Promise<void> {
    if (block.equals(ZERO_BLOCK)) {
      if (this.ex) throw archiveError("corrupt", "extended header without an entry");
      this.state = "eof";
      return;
    }
    // Decode the block alone, then apply PAX/GNU overrides ourselves: node-tar would prepend the
    // ustar prefix to a PAX path, which GNU tar and Python do not.
    let h: Header;
    try {
      h = new Header(block, 0);
    } catch (err) {
      // node-tar throws plain errors for some damaged numeric fields ("invalid base256 encoding").
      throw archiveError(
        "corrupt",
        `bad tar header at entry ${this.entryIndex + 1}: ${(err as Error).message}`,
      );
    }
    if (!h.cksumValid)
      throw archiveError("corrupt", `bad tar header checksum at entry ${this.entryIndex + 1}`);
    const isMeta = [
      "ExtendedHeader",
      "GlobalExtendedHeader",
      "NextFileHasLongPath",
      "NextFileHasLongLinkpath",
    ].includes(h.type);
    if (!isMeta) {
      for (const over of [this.gex, this.ex]) {
        if (!over) continue;
        if (over.path !== undefined && over === this.ex) h.path = over.path;
        if (over.linkpath !== undefined && over === this.ex) h.linkpath = over.linkpath;
        if (over.size !== undefined) h.size = over.size;
        if (over.mode !== undefined) h.mode = over.mode;
        if (over.mtime !== undefined) h.mtime = over.mtime;
      }
    }
    const type = h.type;
    const size = h.size ?? 0;
    if (
      type === "ExtendedHeader" ||
      type === "GlobalExtendedHeader" ||
      type === "NextFileHasLongPath" ||
      type === "NextFileHasLongLinkpath"
    ) {
      if (size > MAX_META_BYTES) throw archiveError("hostile", `oversized ${type} record`);
      this.meta = { kind: type, size, parts: [], got: 0 };
      if (size === 0) this.finishMeta();
      else this.state = "meta";
      return;
    }
    this.ex = undefined;
    this.entryIndex++;
    const raw = h.path ?? "";
    const hostile = HOSTILE_TYPES[type];
    if (hostile) throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: ${hostile}`);
    const mode = (h.mode ?? 0o644) & 0o7777;
    if (type === "Directory") {
      const name = raw.endsWith("/") ? raw.slice(0, -1) : raw;
      this.guard.check(name, "dir");
      if (this.parsed?.kind === "ours" && !this.parsed.dirs.has(name)) {
        throw archiveError("mismatch", `folder ${name} is not in the manifest`);
      }
      if (size) {
        throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: folder with data`);
      }
      this.dirs.push(name);
      this.state = "header";
      return this.handler.dir?.({ path: name, size: 0, mode, mtime: h.mtime });
    }
    if (type !== "File" && type !== "OldFile" && type !== "ContiguousFile") {
      throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: unsupported type ${type}`);
    }
    if (raw.endsWith("/"))
      throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: file name ends with '/'`);
    this.guard.check(raw, "file");
    const info: EntryInfo = { path: raw, size, mode, mtime: h.mtime };
    const pending: PendingFile = { info, hash: createHash("sha256"), remaining: size };
    if (raw === MANIFEST_NAME) {
      if (size > MAX_MANIFEST_BYTES) throw archiveError("bomb", "manifest.json is implausibly large");
      pending.memory = new MemorySink(MAX_MANIFEST_BYTES, "manifest.json");
      pending.sink = pending.memory;
    } else {
      if (this.parsed?.kind === "ours") {
        const want = this.parsed.byPath.get(raw);
        if (!want) throw archiveError("mismatch", `${raw} is in the archive but not in its manifest`);
        if (size > want.size)
          throw archiveError("bomb", `${raw} expands past its manifest size (${size} > ${want.size} bytes)`);
        if (size !== want.size)
          throw archiveError(
            "mismatch",
            `${raw} does not match its manifest (size ${size}, manifest ${want.size})`,
          );
        if ((mode & 0o777) !== (want.mode & 0o777)) {
          throw archiveError(
            "mismatch",
            `${raw} does not match its manifest (mode ${mode.toString(8)}, manifest ${want.mode.toString(8)})`,
          );
        }
      }
      if (raw === AUDIT_KEY_ENTRY && this.parsed?.kind === "ours") {
        pending.memory = new MemorySink(4096, AUDIT_KEY_ENTRY);
        pending.sink = pending.memory;
      } else {
        const sink = this.handler.file?.(info);
        if (sink instanceof Promise) return sink.then((s) => this.begin(pending, s));
        return this.begin(pending, sink);
      }
    }
    return this.begin(pending, pending.sink);
  }

  private begin(pending: PendingFile, sink: FileSink | undefined): void | Promise<void> {
    pending.sink = sink;
    this.current = pending;
    if (pending.remaining === 0) return this.finishFile();
    this.state = "body";
  }

  private finishMeta(): void {
    const m = this.meta!;
    const body = Buffer.concat(m.parts);
    this.meta = undefined;
    try {
      if (m.kind === "ExtendedHeader") this.ex = Pax.parse(body.toString("utf8"), this.ex, false);
      else if (m.kind === "GlobalExtendedHeader") this.gex = Pax.parse(body.toString("utf8"), this.gex, true);
    } catch (err) {
      throw archiveError(
        "corrupt",
        `bad PAX record at entry ${this.entryIndex + 1}: ${(err as Error).message}`,
      );
    }
    if (m.kind === "NextFileHasLongPath")
      this.ex = { ...this.ex, path: body.toString("utf8").replace(/\0.*$/s, "") };
    else if (m.kind === "NextFileHasLongLinkpath")
      this.ex = { ...this.ex, linkpath: body.toString("utf8").replace(/\0.*$/s, "") };
    this.skipPadding(m.size);
  }

  private finishFile(): void | Promise<void> {
    const cur = this.current!;
    this.current = undefined;
    const digest = cur.hash.digest("hex");
    const ended = cur.sink?.end();
    if (ended) return ended.then(() => this.finished(cur, digest));
    this.finished(cur, digest);
  }

  private finished(cur: PendingFile, digest: string): void {
    const name = cur.info.path;
    this.files.push(name);
    this.hashes.set(name, digest);
    if (name === MANIFEST_NAME) {
      const bytes = cur.memory!.bytes;
      this.manifestSha = sha256Hex(bytes);
      try {
        const parsed = parseManifest(bytes);
        if (parsed.kind === "ours" && this.entryIndex !== 1) {
          throw archiveError("hostile", "a bernstein manifest.json must be the first entry");
        }
        this.parsed = parsed;
        this.manifestRaw =
          parsed.kind === "ours" ? (parsed.manifest as unknown as Record<string, unknown>) : parsed.raw;
      } catch (err) {
        if (err instanceof ManifestError) throw archiveError("corrupt", err.message);
        throw err;
      }
      if (this.parsed.kind === "ours") {
        if (!this.gzipHeader.equals(OUR_GZIP_HEADER))
          throw archiveError("corrupt", "gzip header was altered");
        const m = this.parsed.manifest;
        let limit = 0;
        for (const f of m.files)
          limit += Math.ceil(f.size / BLOCK) * BLOCK + 3 * BLOCK + Math.ceil(f.path.length / BLOCK) * BLOCK;
        limit += m.dirs.length * 3 * BLOCK + Math.ceil(bytes.length / BLOCK) * BLOCK + 3 * BLOCK + 20 * BLOCK;
        this.limit = limit;
        if (this.decompressed > limit)
          throw archiveError("bomb", "archive expands past the sizes its manifest lists");
      }
    } else if (this.parsed?.kind === "ours") {
      const want = this.parsed.byPath.get(name)!;
      if (want.sha256 !== digest)
        throw archiveError("mismatch", `${name} does not match its manifest (sha256)`);
      if (name === AUDIT_KEY_ENTRY) this.auditKey = cur.memory!.bytes;
    }
    this.skipPadding(cur.info.size);
  }

  finish(): void {
    if (this.state !== "eof") {
      throw archiveError("truncated", "archive is truncated (no end-of-archive marker)");
    }
    if (!this.manifestRaw) throw archiveError("not-archive", "not a bernstein backup (no manifest.json)");
    if (this.parsed?.kind === "ours") {
      const m = this.parsed.manifest;
      if (this.files.length !== m.file_count) {
        const have = new Set(this.files);
        const missing = m.files.filter((f) => !have.has(f.path));
        throw archiveError(
          "mismatch",
          `archive does not match its manifest: ${missing.length} listed file(s) missing (first: ${missing[0]?.path ?? "?"})`,
        );
      }
    }
  }
}

/**
 * Whether decrypted bytes start like a gzip stream: the magic and method, or (when one damaged
 * base64 character garbled the first bytes through the IV) our fixed header's tail.
 */
function decryptsToGzip(head: Buffer): boolean {
  return (
    head.subarray(0, 3).equals(OUR_GZIP_HEADER.subarray(0, 3)) ||
    (head.length >= 10 && head.subarray(4, 10).equals(OUR_GZIP_HEADER.subarray(4, 10)))
  );
}

function shaMismatch(actual: string, expected: string, from: string | undefined): UserError {
  return archiveError(
    "mismatch",
    `archive is damaged or altered: its sha256 is ${actual}, not ${expected} (${from ?? "expected"})`,
  );
}

/**
 * Resolves on 'drain', or on 'close' (a failed tar loop destroys the stream), and removes both
 * listeners. (A Promise.race against one long-lived promise instead added a reaction to it per
 * wait: ~25 MB of heap by the end of a 4 GB restore.)
 */
function drainedOrClosed(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/** Wraps a source to hash and count its raw bytes. */
async function* measured(
  source: AsyncIterable<Buffer | string>,
  acc: { hash: Hash; bytes: number },
  onProgress?: (bytesRead: number) => void,
): AsyncGenerator<Buffer> {
  const budget = new GarbageBudget();
  for await (const c of source) {
    const chunk = typeof c === "string" ? Buffer.from(c) : c;
    acc.hash.update(chunk);
    acc.bytes += chunk.length;
    budget.add(chunk.length);
    onProgress?.(acc.bytes);
    yield chunk;
  }
}

function zlibToArchiveError(err: unknown): UserError {
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
 * Reads a whole archive from a byte source, validating as described at the top, and hands
 * entries to `handler`. Resolves only when everything (HMAC included) checked out.
 */
export async function readArchive(
  source: AsyncIterable<Buffer | string>,
  handler: ExtractHandler,
  opts: ReadArchiveOptions = {},
): Promise<ArchiveSummary> {
  tuneForShortBursts();
  const acc = { hash: createHash("sha256"), bytes: 0 };
  const expectSha256 = opts.expectSha256?.toLowerCase();
  const it = measured(source, acc, opts.onProgress)[Symbol.asyncIterator]();
  // Peek enough bytes to tell gzip from salt+token.
  let head = Buffer.alloc(0);
  while (head.length < SALT_BYTES + 6) {
    const r = await it.next();
    if (r.done) break;
    head = Buffer.concat([head, r.value]);
  }
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const age = !gzip && head.length >= AGE_MAGIC.length && looksLikeAge(head);
  const encrypted = !gzip && (age || looksEncrypted(head));
  if (!gzip && !encrypted) {
    throw archiveError(
      "not-archive",
      `${opts.label ?? "input"} is not a backup archive (neither gzip nor an encrypted backup)`,
    );
  }
  if (encrypted) checkKeyKind(opts, age);
  const decryptor = !encrypted
    ? undefined
    : age
      ? new AgeArchiveDecryptor(opts.identities!, opts.label)
      : new FernetDecryptor(opts.password!, opts.keyCache);
  const tar = new TarReader(handler);
  // 256 KiB of output per step: each step is a hand-off to the thread pool and back, and
  // those cost more than the bytes (64 KiB steps took 180 ms to inflate what one call does in 135).
  // Room for a few steps on each side lets inflating run ahead of the tar loop; with the
  // default 16 KiB the two took turns (a dry run of the seed-sized archive: 0.27 -> 0.23 s).
  // (zlib streams pass stream options on to Transform; @types/node leaves them out.)
  const gunzipOptions: ZlibOptions & TransformOptions = {
    chunkSize: 256 * 1024,
    writableHighWaterMark: 256 * 1024,
    readableHighWaterMark: 1024 * 1024,
  };
  const gunzip = createGunzip(gunzipOptions);
  let failure: unknown;
  const tarDone = (async () => {
    try {
      for await (const chunk of gunzip) await tar.push(chunk as Buffer);
      tar.finish();
    } catch (err) {
      failure ??= zlibToArchiveError(err);
      gunzip.destroy();
      throw failure;
    }
  })();
  tarDone.catch(() => {});

  let gzHeaderNeeded = 10;
  const seal = new SealChecker();
  const feed = async (plain: Buffer): Promise<void> => {
    if (failure || !plain.length) return;
    seal.update(plain);
    if (gzHeaderNeeded > 0) {
      tar.gzipHeader = Buffer.concat([tar.gzipHeader, plain.subarray(0, gzHeaderNeeded)]);
      gzHeaderNeeded = 10 - tar.gzipHeader.length;
    }
    // A gzip or tar error surfaces through the tar loop (tarDone), which destroys gunzip.
    if (!gunzip.write(plain) && !gunzip.destroyed) await drainedOrClosed(gunzip);
  };

  try {
    let chunk: Buffer | undefined = head;
    for (;;) {
      if (chunk && chunk.length) {
        if (decryptor) {
          let plain: Buffer;
          try {
            plain = await decryptor.update(chunk);
          } catch (err) {
            if (age && expectSha256 && err instanceof UserError && err.exitCode === ExitCode.BAD_PASSWORD) {
              // An altered stanza looks like a wrong identity: the recorded sha256 tells them apart.
              while (!(await it.next()).done);
              const actual = acc.hash.copy().digest("hex");
              if (actual !== expectSha256) throw shaMismatch(actual, expectSha256, opts.expectSha256From);
            }
            throw err instanceof FernetFormatError
              ? archiveError("corrupt", `encrypted archive is damaged: ${err.message}`)
              : err;
          }
          await feed(plain);
        } else {
          await feed(chunk);
          if (failure) break; // a plain archive has nothing more to learn from the rest
        }
      }
      const r = await it.next();
      if (r.done) break;
      chunk = r.value;
    }
    if (decryptor) {
      try {
        await feed(decryptor.final());
      } catch (err) {
        if (err instanceof FernetAuthError) {
          // Every byte has been read: with a recorded sha256 there is no guessing.
          if (expectSha256) {
            const actual = acc.hash.copy().digest("hex");
            if (actual !== expectSha256) throw shaMismatch(actual, expectSha256, opts.expectSha256From);
            throw new UserError(
              `cannot decrypt ${opts.label ?? "archive"}: wrong password (the archive is intact: its sha256 matches ${opts.expectSha256From ?? "the recorded one"})`,
              ExitCode.BAD_PASSWORD,
              { problem: "auth" },
            );
          }
          // With a wrong key the first block decrypts to noise; with the right key a damaged or
          // truncated token still decrypts to a gzip start (a 1 in 2^24 coincidence otherwise).
          if (decryptor instanceof FernetDecryptor && decryptsToGzip(decryptor.plainHead)) {
            throw archiveError(
              "corrupt",
              `encrypted archive ${opts.label ?? ""} was altered or truncated: it decrypts with this password but fails authentication`.replace(
                "  ",
                " ",
              ),
            );
          }
          throw new UserError(
            `cannot decrypt ${opts.label ?? "archive"}: wrong password, or the archive's first 71 bytes are damaged (no .sha256 beside it to tell which): authentication failed`,
            ExitCode.BAD_PASSWORD,
            { problem: "auth" },
          );
        }
        if (err instanceof FernetFormatError)
          throw archiveError("truncated", `encrypted archive is damaged: ${err.message}`);
        throw err;
      }
    }
    if (!failure) gunzip.end();
    await tarDone;
  } catch (err) {
    // Decided now: the tar loop stopped below fails with a premature close of its own.
    const reported = err instanceof UserError ? err : (failure ?? err);
    gunzip.destroy();
    await it.return?.(undefined);
    // The tar loop may be inside a handler call (waiting for the staging worker to take a
    // batch): let it see the destroyed gunzip and stop before we return. Otherwise it would go
    // on calling the handler after the caller has closed it and removed its folder (a restore's
    // worker was unref'd by that late call while being terminated, and the process could exit
    // with the restore still pending, its temp folder left behind).
    await tarDone.catch(() => {});
    throw reported;
  }

  const parsed = tar.parsed!;
  if (parsed.kind === "ours" && parsed.manifest.format_version >= 2 && !seal.sealed()) {
    throw archiveError(
      "corrupt",
      "archive is damaged: its seal does not match its bytes (a change that gzip's own checks cannot see)",
    );
  }
  const archiveSha = acc.hash.digest("hex");
  if (expectSha256 && expectSha256 !== archiveSha)
    throw shaMismatch(archiveSha, expectSha256, opts.expectSha256From);
  return {
    format: parsed.kind === "ours" ? "bernstein" : "reference",
    encrypted,
    sha256: archiveSha,
    size_bytes: acc.bytes,
    file_count: tar.files.length,
    files: tar.files,
    file_hashes: tar.hashes,
    dirs: tar.dirs,
    manifest_raw: tar.manifestRaw!,
    manifest_sha256: tar.manifestSha,
    parsed,
    per_file_hashes: parsed.kind === "ours",
    audit_key: tar.auditKey,
  };
}
