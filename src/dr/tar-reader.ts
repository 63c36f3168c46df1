/**
 * The tar layer of reading an archive: consumes decompressed bytes and validates every entry
 * (type, name, and for our archives the manifest's size, mode and sha256) before a byte of it is
 * handed to the caller's `ExtractHandler`. The manifest (first entry of our archives) also
 * bounds how far the decompressed stream may grow (a decompression bomb stops early).
 */
import { createHash, type Hash } from "node:crypto";
import { Header } from "tar/header";
import { Pax } from "tar/pax";
import type { HeaderData } from "tar/header";
import { decodeCommonHeader, paxNames, rawHeaderPath, type DecodedHeader } from "./tar-header.js";
import { nameFromBytes } from "../workspace/raw-name.js";
import { OUR_GZIP_HEADER, archiveError } from "./archive-error.js";
import { HOSTILE_TYPES, NameGuard } from "./entry-policy.js";
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
const META_TYPES = [
  "ExtendedHeader",
  "GlobalExtendedHeader",
  "NextFileHasLongPath",
  "NextFileHasLongLinkpath",
];

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
  /** The manifest, as soon as it is read (before the entries after it). */
  manifest?(raw: Record<string, unknown>): void;
}

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

/** How far the decompressed stream of an archive with this manifest may grow. */
function expansionLimit(parsed: ParsedManifest & { kind: "ours" }, manifestBytes: number): number {
  const m = parsed.manifest;
  let limit = 0;
  for (const f of m.files)
    limit += Math.ceil(f.size / BLOCK) * BLOCK + 3 * BLOCK + Math.ceil(f.path.length / BLOCK) * BLOCK;
  return (
    limit + m.dirs.length * 3 * BLOCK + Math.ceil(manifestBytes / BLOCK) * BLOCK + 3 * BLOCK + 20 * BLOCK
  );
}

export class TarReader {
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

  /** `encrypted`: whether the archive was read through a decryptor (its key may travel then). */
  constructor(
    private readonly handler: ExtractHandler,
    private readonly encrypted: boolean,
  ) {}

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
      const r = this.consume(data, off);
      if (typeof r === "number") off = r;
      else off = await r;
    }
  }

  /**
   * Consumes what the current state takes of `data` from `off` and returns the new offset (a
   * promise only when a handler call is asynchronous).
   */
  private consume(data: Buffer, off: number): number | Promise<number> {
    const avail = data.length - off;
    switch (this.state) {
      case "header": {
        if (avail < BLOCK) {
          this.leftover = Buffer.from(data.subarray(off));
          return data.length;
        }
        const r = this.header(data.subarray(off, off + BLOCK));
        return r ? r.then(() => off + BLOCK) : off + BLOCK;
      }
      case "body":
        return this.body(data, off, avail);
      case "meta": {
        const m = this.meta!;
        const n = Math.min(m.size - m.got, avail);
        m.parts.push(Buffer.from(data.subarray(off, off + n)));
        m.got += n;
        if (m.got === m.size) this.finishMeta();
        return off + n;
      }
      case "pad": {
        const n = Math.min(this.pad, avail);
        this.pad -= n;
        if (this.pad === 0) this.state = "header";
        return off + n;
      }
      case "eof": {
        // After the end-of-archive block only zero padding may follow.
        for (let i = off; i < data.length; i++) {
          if (data[i] !== 0) throw archiveError("corrupt", "data after the end of the archive");
        }
        return data.length;
      }
    }
  }

  private body(data: Buffer, off: number, avail: number): number | Promise<number> {
    const cur = this.current!;
    const n = Math.min(cur.remaining, avail);
    const piece = data.subarray(off, off + n);
    cur.hash.update(piece);
    cur.remaining -= n;
    const written = cur.sink?.write(piece);
    if (written) return written.then(() => this.bodyWritten(cur, off + n));
    return this.bodyWritten(cur, off + n);
  }

  private bodyWritten(cur: PendingFile, next: number): number | Promise<number> {
    if (cur.remaining !== 0) return next;
    const r = this.finishFile();
    return r ? r.then(() => next) : next;
  }

  private skipPadding(size: number): void {
    this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
    this.state = this.pad ? "pad" : "header";
  }

  /** Decodes one header block and applies pending PAX/GNU overrides (unless it is one itself). */
  private decode(block: Buffer): DecodedHeader {
    // Decode the block alone, then apply PAX/GNU overrides ourselves: node-tar would prepend the
    // ustar prefix to a PAX path, which GNU tar and Python do not.
    let h: DecodedHeader;
    try {
      const common = decodeCommonHeader(block);
      if (common) h = common;
      else {
        h = new Header(block, 0);
        const raw = rawHeaderPath(block);
        if (raw !== undefined) h.path = raw;
      }
    } catch (err) {
      // node-tar throws plain errors for some damaged numeric fields ("invalid base256 encoding").
      throw archiveError(
        "corrupt",
        `bad tar header at entry ${this.entryIndex + 1}: ${(err as Error).message}`,
      );
    }
    if (!h.cksumValid)
      throw archiveError("corrupt", `bad tar header checksum at entry ${this.entryIndex + 1}`);
    if (META_TYPES.includes(h.type)) return h;
    for (const over of [this.gex, this.ex]) {
      if (!over) continue;
      if (over.path !== undefined && over === this.ex) h.path = over.path;
      if (over.linkpath !== undefined && over === this.ex) h.linkpath = over.linkpath;
      if (over.size !== undefined) h.size = over.size;
      if (over.mode !== undefined) h.mode = over.mode;
      if (over.mtime !== undefined) h.mtime = over.mtime;
    }
    return h;
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
    const h = this.decode(block);
    const type = h.type;
    const size = h.size ?? 0;
    if (META_TYPES.includes(type)) {
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
    if (type === "Directory") return this.directory(raw, size, mode, h.mtime);
    if (type !== "File" && type !== "OldFile" && type !== "ContiguousFile") {
      throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: unsupported type ${type}`);
    }
    return this.file({ path: raw, size, mode, mtime: h.mtime });
  }

  private directory(raw: string, size: number, mode: number, mtime: Date | undefined): void | Promise<void> {
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
    return this.handler.dir?.({ path: name, size: 0, mode, mtime });
  }

  private file(info: EntryInfo): void | Promise<void> {
    const raw = info.path;
    if (raw.endsWith("/"))
      throw archiveError("hostile", `hostile entry ${JSON.stringify(raw)}: file name ends with '/'`);
    this.guard.check(raw, "file");
    const pending: PendingFile = { info, hash: createHash("sha256"), remaining: info.size };
    if (raw === MANIFEST_NAME) {
      if (info.size > MAX_MANIFEST_BYTES) throw archiveError("bomb", "manifest.json is implausibly large");
      pending.memory = new MemorySink(MAX_MANIFEST_BYTES, "manifest.json");
      return this.begin(pending, pending.memory);
    }
    // Neither our plain backups nor the Python original's carry the key: one in a plain archive
    // was put there by someone else, and a restore would make it the audit key of every
    // workspace of the user, with which they could sign entries of their own.
    if (raw === AUDIT_KEY_ENTRY && !this.encrypted)
      throw archiveError(
        "hostile",
        `hostile entry ${JSON.stringify(raw)}: an audit key in an archive that is not encrypted (plain backups never carry it)`,
      );
    if (this.parsed?.kind === "ours") this.checkListed(info);
    if (raw === AUDIT_KEY_ENTRY && this.parsed?.kind === "ours") {
      pending.memory = new MemorySink(4096, AUDIT_KEY_ENTRY);
      return this.begin(pending, pending.memory);
    }
    const sink = this.handler.file?.(info);
    if (sink instanceof Promise) return sink.then((s) => this.begin(pending, s));
    return this.begin(pending, sink);
  }

  /** An entry of our archive must be in the manifest with that size and mode. */
  private checkListed({ path: raw, size, mode }: EntryInfo): void {
    const want = (this.parsed as ParsedManifest & { kind: "ours" }).byPath.get(raw);
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
      if (m.kind === "ExtendedHeader") {
        this.ex = Pax.parse(body.toString("utf8"), this.ex, false);
        Object.assign(this.ex, paxNames(body));
      } else if (m.kind === "GlobalExtendedHeader")
        this.gex = Pax.parse(body.toString("utf8"), this.gex, true);
    } catch (err) {
      throw archiveError(
        "corrupt",
        `bad PAX record at entry ${this.entryIndex + 1}: ${(err as Error).message}`,
      );
    }
    const nul = body.indexOf(0);
    const untilNul = (): string => nameFromBytes(nul < 0 ? body : body.subarray(0, nul));
    if (m.kind === "NextFileHasLongPath") this.ex = { ...this.ex, path: untilNul() };
    else if (m.kind === "NextFileHasLongLinkpath") this.ex = { ...this.ex, linkpath: untilNul() };
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
    if (name === MANIFEST_NAME) this.manifestRead(cur.memory!.bytes);
    else if (this.parsed?.kind === "ours") {
      const want = this.parsed.byPath.get(name)!;
      if (want.sha256 !== digest)
        throw archiveError("mismatch", `${name} does not match its manifest (sha256)`);
      if (name === AUDIT_KEY_ENTRY) this.auditKey = cur.memory!.bytes;
    }
    this.skipPadding(cur.info.size);
  }

  private manifestRead(bytes: Buffer): void {
    this.manifestSha = sha256Hex(bytes);
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(bytes);
    } catch (err) {
      if (err instanceof ManifestError) throw archiveError("corrupt", err.message);
      throw err;
    }
    if (parsed.kind === "ours" && this.entryIndex !== 1) {
      throw archiveError("hostile", "a bernstein manifest.json must be the first entry");
    }
    this.parsed = parsed;
    this.manifestRaw =
      parsed.kind === "ours" ? (parsed.manifest as unknown as Record<string, unknown>) : parsed.raw;
    this.handler.manifest?.(this.manifestRaw);
    if (parsed.kind !== "ours") return;
    if (!this.gzipHeader.equals(OUR_GZIP_HEADER)) throw archiveError("corrupt", "gzip header was altered");
    this.limit = expansionLimit(parsed, bytes.length);
    if (this.decompressed > this.limit)
      throw archiveError("bomb", "archive expands past the sizes its manifest lists");
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
