/**
 * `manifest.json`, the first entry of every archive we write. It keeps the reference's fields
 * (`created_at`, `included_dirs`, `excluded_dirs`, `excluded_patterns`) so the Python restore
 * reads it, and adds what makes an archive checkable on its own: every file's size, mode and
 * sha256, the counts, the tool that wrote it and the state position it captured.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { WalError } from "../wal/chain.js";

export const MANIFEST_NAME = "manifest.json";
/**
 * 2: the archive ends with a seal member (seal.ts). 1 (no seal) is still read: archives written
 * before the seal existed.
 */
export const FORMAT_VERSION = 2;
const READABLE_FORMAT_VERSIONS = [1, 2];
/** Where an encrypted archive carries the audit HMAC key (never extracted into `.sdd/`). */
export const AUDIT_KEY_ENTRY = "secrets/audit.key";
/** Upper bound on a manifest we are willing to parse (8,421 files take about 1.5 MB). */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export interface ManifestFile {
  path: string;
  size: number;
  mode: number;
  sha256: string;
}
export interface ManifestDir {
  path: string;
  mode: number;
}
export interface WalPosition {
  seq: number;
  entry_hash: string;
}
export interface StatePosition {
  wal: Record<string, WalPosition | null>;
  audit: { file: string; last_hmac: string } | null;
  checkpoint: { id: string; file: string } | null;
}
export interface SnapshotInfo {
  /** `paused`: a live orchestrator acknowledged a pause; `idle`: no live writer; `unpaused`: a live writer did not answer. */
  method: "paused" | "idle" | "unpaused";
  wal_cut: "last-valid-entry";
  paused_ms?: number;
  warning?: string;
}
/** The HEAD of the git repository holding `.sdd/` when the backup was taken (worktree tasks merge there). */
export interface RepositoryHead {
  commit: string;
  /** null: a detached HEAD. */
  branch: string | null;
}
/** The audit chain as a backup or restore checked it (`skipped`: no log, or no key to check it with). */
export interface AuditCheck {
  status: "ok" | "failed" | "skipped";
  detail: string;
}
/**
 * How a finding is named: a rollback lost acknowledged entries; a repeated run or an unreadable
 * closed marker is damage to the WAL or to what records its end (nothing is known to be lost).
 */
export function findingWording(kind: string): "rolled back" | "damaged" {
  return kind === "repeated_run" || kind === "corrupt_marker" ? "damaged" : "rolled back";
}

/** A WAL that ends before a position recorded for it: rollback.ts's WalRollback, as recorded (kinds of any version). */
export interface RecordedRollback {
  run_id: string;
  kind: string;
  evidence: string;
  recorded_by: string;
  /** null: not known (a corrupt closed marker). */
  expected_seq: number | null;
  expected_hash: string | null;
  wal_last_seq: number | null;
  wal_last_hash: string | null;
  message: string;
}
/** What the backup found checking the state it copied, beyond `wal_breaks` (state-checks.ts). */
export interface StateChecks {
  wal_rollbacks: RecordedRollback[];
  audit: AuditCheck;
}
export interface Manifest {
  created_at: number;
  included_dirs: string[];
  excluded_dirs: string[];
  excluded_patterns: string[];
  format_version: number;
  tool: { name: string; version: string };
  source: { host: string; path: string };
  encrypted: boolean;
  audit_key_included: boolean;
  /** Regular files in the archive, manifest.json included. */
  file_count: number;
  /** Bytes of the listed files (manifest.json excluded). */
  total_bytes: number;
  state: StatePosition;
  snapshot: SnapshotInfo;
  /** Absent when `.sdd/` is not in a git repository. */
  repository?: RepositoryHead;
  /** The first break of each WAL copied with a broken chain; absent when every chain is intact. */
  wal_breaks?: WalError[];
  /**
   * Written by every backup since it checks rollbacks and the audit chain; absent from older
   * archives and the Python reference's, whose restore then runs the checks itself.
   */
  state_checks?: StateChecks;
  dirs: ManifestDir[];
  files: ManifestFile[];
}

/** The manifest's bytes: indented like the reference's, newline at the end. */
export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m, null, 2) + "\n", "utf8");
}

export function sha256Hex(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export class ManifestError extends Error {
  override name = "ManifestError";
}

const HEX64 = /^[0-9a-f]{64}$/;

/** What we learn from an archive's manifest.json: ours (with per-file hashes) or the reference's. */
export type ParsedManifest =
  | { kind: "ours"; manifest: Manifest; byPath: Map<string, ManifestFile>; dirs: Set<string> }
  | { kind: "reference"; raw: Record<string, unknown> };

/** Parses and checks a manifest's shape; throws ManifestError with what is wrong. */
export function parseManifest(bytes: Buffer): ParsedManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ManifestError("manifest.json is not valid JSON");
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw))
    throw new ManifestError("manifest.json is not an object");
  const obj = raw as Record<string, unknown>;
  if (obj.format_version === undefined) return { kind: "reference", raw: obj };
  if (!READABLE_FORMAT_VERSIONS.includes(obj.format_version as number)) {
    throw new ManifestError(
      `manifest format_version ${String(obj.format_version)} is not supported (this tool reads ${READABLE_FORMAT_VERSIONS.join(" and ")})`,
    );
  }
  const m = obj as unknown as Manifest;
  if (!Array.isArray(m.files) || !Array.isArray(m.dirs)) throw new ManifestError("manifest has no file list");
  if (!Number.isSafeInteger(m.file_count) || m.file_count !== m.files.length + 1) {
    throw new ManifestError("manifest file_count does not match its file list");
  }
  const byPath = new Map<string, ManifestFile>();
  let total = 0;
  for (const f of m.files) {
    if (
      !f ||
      typeof f.path !== "string" ||
      !Number.isSafeInteger(f.size) ||
      f.size < 0 ||
      !Number.isSafeInteger(f.mode) ||
      typeof f.sha256 !== "string" ||
      !HEX64.test(f.sha256)
    ) {
      throw new ManifestError("manifest has a malformed file row");
    }
    if (byPath.has(f.path)) throw new ManifestError(`manifest lists ${f.path} twice`);
    byPath.set(f.path, f);
    total += f.size;
  }
  if (total !== m.total_bytes) throw new ManifestError("manifest total_bytes does not match its file sizes");
  const dirs = new Set<string>();
  for (const d of m.dirs) {
    if (!d || typeof d.path !== "string" || !Number.isSafeInteger(d.mode))
      throw new ManifestError("manifest has a malformed folder row");
    dirs.add(d.path);
  }
  return { kind: "ours", manifest: m, byPath, dirs };
}

/** Where an archive holds the WAL of `run`. */
const walFileOf = (run: string): string => `runtime/wal/${run}.wal.jsonl`;

/**
 * The state a manifest says its archive holds that the archive's file list does not: a WAL run
 * at a position, the audit log up to a file, a checkpoint. One line each; empty when consistent.
 */
export function stateNotInArchive(
  state: StatePosition | undefined,
  archived: (rel: string) => boolean,
): string[] {
  const missing: string[] = [];
  if (!state) return missing;
  for (const [run, pos] of Object.entries(state.wal ?? {}))
    if (pos && !archived(walFileOf(run)))
      missing.push(`the manifest names WAL run ${run} at seq ${pos.seq}, which the archive does not hold`);
  if (state.audit && !archived(state.audit.file))
    missing.push(
      `the manifest names the audit log up to ${state.audit.file}, which the archive does not hold`,
    );
  if (state.checkpoint) {
    const { id, file } = state.checkpoint;
    if (!archived(file))
      missing.push(`the manifest names checkpoint ${id} (${file}), which the archive does not hold`);
    else if (path.posix.basename(file) !== `checkpoint-${id}.json`)
      missing.push(`the manifest names checkpoint ${id}, but its file ${file} is another checkpoint`);
  }
  return missing;
}
