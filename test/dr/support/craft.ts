/** Hand-made tar archives for the hostile-input tests (node-tar's Header, our own layout). */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { Header, Pax } from "tar";

type EntryType = "File" | "Directory" | "SymbolicLink" | "Link" | "CharacterDevice" | "BlockDevice" | "FIFO";

export function tarEntry(e: {
  path: string;
  type?: EntryType;
  data?: Buffer;
  size?: number;
  linkpath?: string;
  mode?: number;
}): Buffer {
  const data = e.data ?? Buffer.alloc(0);
  const type = e.type ?? "File";
  const h = {
    path: e.path,
    type,
    size: e.size ?? (type === "File" ? data.length : 0),
    mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
    uid: 0,
    gid: 0,
    mtime: new Date(1_700_000_000_000),
    linkpath: e.linkpath,
  };
  const block = Buffer.alloc(512);
  const parts: Buffer[] = [];
  if (new Header(h).encode(block, 0)) parts.push(new Pax(h).encode());
  parts.push(block, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  return Buffer.concat(parts);
}

export const tarEnd = (): Buffer => Buffer.alloc(1024);

export const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

export interface CraftFile {
  path: string;
  data: Buffer;
  mode?: number;
}

/** A manifest of ours describing `files` (and `dirs`). */
export function manifestFor(files: CraftFile[], dirs: string[] = []): Buffer {
  const rows = files.map((f) => ({
    path: f.path,
    size: f.data.length,
    mode: f.mode ?? 0o644,
    sha256: sha(f.data),
  }));
  const m = {
    created_at: 1_700_000_000.5,
    included_dirs: [],
    excluded_dirs: [],
    excluded_patterns: [],
    format_version: 1,
    tool: { name: "bernstein-ts", version: "0.1.0" },
    source: { host: "test", path: "/test/.sdd" },
    encrypted: false,
    audit_key_included: false,
    file_count: rows.length + 1,
    total_bytes: rows.reduce((s, r) => s + r.size, 0),
    state: { wal: {}, audit: null, checkpoint: null },
    snapshot: { method: "idle", wal_cut: "last-valid-entry" },
    dirs: dirs.map((d) => ({ path: d, mode: 0o755 })),
    files: rows,
  };
  return Buffer.from(JSON.stringify(m, null, 2) + "\n");
}

/** gzip exactly like our writer (so our fixed gzip header is accepted). */
export const gz = (tar: Buffer): Buffer => gzipSync(tar, { level: 6 });

/** A well-formed archive of ours with manifest first, then `extra` raw tar bytes, then the end. */
export function archiveOf(
  files: CraftFile[],
  opts: { extra?: Buffer[]; manifest?: Buffer; dirs?: string[] } = {},
): Buffer {
  const manifest = opts.manifest ?? manifestFor(files, opts.dirs);
  const parts = [tarEntry({ path: "manifest.json", data: manifest })];
  for (const d of opts.dirs ?? []) parts.push(tarEntry({ path: d + "/", type: "Directory" }));
  for (const f of files) parts.push(tarEntry({ path: f.path, data: f.data, mode: f.mode }));
  parts.push(...(opts.extra ?? []), tarEnd());
  return gz(Buffer.concat(parts));
}
