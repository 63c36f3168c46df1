/**
 * `dr verify`: everything a dry-run checks (structure, hostile entries, every file against the
 * manifest, the HMAC of an encrypted archive), plus the meaning of the state inside. The archive
 * is extracted into a private temp folder (removed afterwards, see scratch-dir.ts) and checked with the owners'
 * verifiers, never re-implemented here:
 *  - every WAL chain with `verifyWal` (src/wal), and its tail against the manifest's position;
 *  - the audit chain with `verifyAuditLog` (src/audit), keyed by the archive's own key
 *    (encrypted backups carry it) or `--key-file`;
 *  - the newest checkpoint with `validateCheckpointFile` (src/checkpoint): body hash, and the WAL
 *    entry at its `wal_position` exists with that hash.
 */
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { auditKeyBytes, loadAuditKey } from "../audit/key.js";
import { auditBreakSummary, verifyAuditLog } from "../audit/verify.js";
import { verifyWal } from "../wal/reader.js";
import { findWalRollbacks } from "./rollback.js";
import { listWalRunFiles } from "../wal/run-files.js";
import { listCheckpointFiles, validateCheckpointFile } from "../checkpoint/checkpoint.js";
import { resolveOptions } from "../json/object.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import { Workspace } from "../workspace/layout.js";
import { findingWording, type Manifest } from "./manifest.js";
import { withKeysAhead } from "./keys-ahead.js";
import { openArchiveFile } from "./restore.js";
import { makeScratchDir, removeDeadScratchDirs } from "./scratch-dir.js";
import { StagingWriter } from "./staging-writer.js";
import { readArchive, type ArchiveSummary, type ReadArchiveOptions } from "./unpack.js";
import { shown } from "../workspace/shown-path.js";

export type CheckStatus = "ok" | "failed" | "skipped";
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}
export interface VerifyReport {
  ok: boolean;
  source: string;
  sha256: string;
  size_bytes: number;
  file_count: number;
  format: ArchiveSummary["format"];
  encrypted: boolean;
  per_file_hashes: boolean;
  tool: { name: string; version: string | null };
  checks: Check[];
}

export interface VerifyOptions extends ReadArchiveOptions {
  /** Audit key for the chain (default: the key inside the archive). */
  keyFile?: string;
}

/** Checks the state of an extracted `.sdd` folder. Used by verify and by the drill. */
export async function verifyStateFolder(
  root: string,
  opts: { manifest?: Manifest; auditKey?: Buffer; keyFile?: string },
): Promise<Check[]> {
  const checks: Check[] = [];
  // WAL chains.
  const walFiles = (await listWalRunFiles(new Workspace(root).walDir).catch(() => [])).sort((a, b) =>
    a.file < b.file ? -1 : a.file > b.file ? 1 : 0,
  );
  for (const { run_id: run, file } of walFiles) {
    const r = await verifyWal(file, run);
    const want = opts.manifest?.state.wal[run];
    let detail = r.ok
      ? `${r.entries} entries, chain intact, last seq ${r.last_seq}`
      : `${r.error_count} break(s); first: ${r.errors[0]?.kind} at seq ${r.errors[0]?.seq}, line ${r.errors[0]?.line}`;
    let ok = r.ok;
    // The backup found the workspace's WAL broken and said so: the archive holds it as it was.
    if (!ok && opts.manifest?.wal_breaks?.some((b) => b.run_id === run))
      detail += " (broken in the workspace when it was backed up: recorded in the manifest)";
    if (ok && want && (want.seq !== r.last_seq || want.entry_hash !== r.last_hash)) {
      ok = false;
      detail = `tail seq ${r.last_seq} does not match the manifest's position (seq ${want.seq})`;
    }
    checks.push({ name: `wal ${run}`, status: ok ? "ok" : "failed", detail });
  }
  // A run the manifest recorded at a position must be there: its absence is lost state, not
  // an archive without a WAL.
  const walRuns = new Set(walFiles.map((f) => f.run_id));
  const namedRuns = Object.entries(opts.manifest?.state?.wal ?? {}).filter(
    ([run, pos]) => pos && !walRuns.has(run),
  );
  for (const [run, pos] of namedRuns)
    checks.push({
      name: `wal ${run}`,
      status: "failed",
      detail: `not in the archive; the manifest records it at seq ${pos!.seq}`,
    });
  if (!walFiles.length && !namedRuns.length)
    checks.push({ name: "wal", status: "skipped", detail: "no WAL files in the archive" });
  // A WAL that ends before its closed marker or a checkpoint inside the archive: `start` on the
  // restored copy refuses it (a backup leaves out a bad last line, which on a closed run is damage).
  for (const r of (await findWalRollbacks(new Workspace(root))).rollbacks)
    checks.push({
      name: `wal ${r.run_id}`,
      status: "failed",
      detail: `${findingWording(r.kind)}: ${r.message}`,
    });

  // Audit chain.
  let key = opts.auditKey;
  let keySource = "the audit key inside the archive";
  if (opts.keyFile) {
    try {
      key = (await loadAuditKey({ keyFile: opts.keyFile, create: false })).key;
      keySource = `the audit key ${opts.keyFile}`;
    } catch (err) {
      checks.push({ name: "audit", status: "failed", detail: (err as Error).message });
      key = undefined;
      keySource = "";
    }
  }
  const auditFiles = (await readdir(path.join(root, "audit")).catch(() => [] as string[])).filter((n) =>
    n.endsWith(".jsonl"),
  );
  const auditWant = opts.manifest?.state?.audit;
  if (auditWant && !auditFiles.some((n) => `audit/${n}` === auditWant.file)) {
    // Checked with or without a key: the file the chain ends in is missing whatever the key.
    checks.push({
      name: "audit",
      status: "failed",
      detail: `${auditWant.file} is not in the archive; the manifest records the chain's end there`,
    });
  } else if (!auditFiles.length) {
    checks.push({ name: "audit", status: "skipped", detail: "no audit log in the archive" });
  } else if (key) {
    const r = await verifyAuditLog(path.join(root, "audit"), auditKeyBytes(key));
    const want = opts.manifest?.state.audit;
    let ok = r.ok;
    let detail = r.ok
      ? `${r.entries} entries in ${r.files.length} file(s), chain intact, verified with ${keySource}`
      : auditBreakSummary(r, keySource, (f) => path.basename(f));
    if (ok && want && want.last_hmac !== r.last_hmac) {
      ok = false;
      detail = "the chain's last hmac does not match the manifest's position";
    }
    checks.push({ name: "audit", status: ok ? "ok" : "failed", detail });
  } else if (keySource) {
    checks.push({
      name: "audit",
      status: "skipped",
      detail: "no audit key: plain backups do not carry it; pass --key-file to verify the chain",
    });
  }

  // Newest checkpoint, validated by its owner (body hash, WAL entry at its position).
  const ws = new Workspace(root);
  const checkpoints = await listCheckpointFiles(ws);
  const newest = checkpoints[0];
  const checkpointWant = opts.manifest?.state?.checkpoint;
  if (checkpointWant && checkpointWant.id !== newest?.id) {
    const held = checkpoints.some((c) => c.id === checkpointWant.id);
    const newestNote = newest ? `the archive's newest is ${newest.id}` : "the archive holds none";
    checks.push({
      name: `checkpoint ${checkpointWant.id}`,
      status: "failed",
      detail: held
        ? `the manifest names it as the newest checkpoint; ${newestNote}`
        : `not in the archive, where the manifest names it as the newest checkpoint (${newestNote})`,
    });
  } else if (!newest) {
    checks.push({ name: "checkpoint", status: "skipped", detail: "no checkpoint in the archive" });
  } else {
    const c = await validateCheckpointFile(ws, newest.file);
    const name = `checkpoint ${newest.id}`;
    if (c.ok) {
      checks.push({
        name,
        status: "ok",
        detail: "newest checkpoint is valid and its WAL position exists with that hash",
      });
    } else if (c.kind === "not_ours") {
      checks.push({
        name,
        status: "skipped",
        detail: `not in our checkpoint format (${c.problem}); parsed only`,
      });
    } else {
      checks.push({ name, status: "failed", detail: `${c.kind}: ${c.problem}` });
    }
  }
  return checks;
}

/** Verifies an archive from any byte source. */
export async function verifyArchive(
  source: AsyncIterable<Buffer | string>,
  opts: VerifyOptions & { label: string },
): Promise<VerifyReport> {
  opts = await withKeysAhead(source, opts);
  await removeDeadScratchDirs();
  const dir = await makeScratchDir("verify");
  let writer: StagingWriter | undefined;
  const interrupt = cleanupOnInterrupt(`the verify's temp folder ${shown(dir)}`, async () => {
    await writer?.close(); // no file is created in it after this
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  try {
    const staging = path.join(dir, "sdd");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(staging, { mode: 0o700 });
    writer = new StagingWriter(staging, { fsync: false, archiveBytes: opts.archiveBytes });
    let summary;
    try {
      summary = await readArchive(source, writer, opts);
      await writer.finish();
    } finally {
      await writer.close();
    }
    const checks: Check[] = [
      {
        name: "archive",
        status: "ok",
        detail: summary.per_file_hashes
          ? `${summary.file_count} files, every one matches its manifest (size, mode, sha256)${summary.encrypted ? "; HMAC verified" : ""}`
          : `${summary.file_count} files; archive of the Python reference: no per-file hashes to check, structure checked`,
      },
    ];
    const manifest = summary.parsed.kind === "ours" ? summary.parsed.manifest : undefined;
    checks.push(
      ...(await verifyStateFolder(staging, { manifest, auditKey: summary.audit_key, keyFile: opts.keyFile })),
    );
    const tool = manifest
      ? { name: manifest.tool.name, version: manifest.tool.version }
      : { name: "bernstein (python reference)", version: null };
    return {
      ok: checks.every((c) => c.status !== "failed"),
      source: opts.label,
      sha256: summary.sha256,
      size_bytes: summary.size_bytes,
      file_count: summary.file_count,
      format: summary.format,
      encrypted: summary.encrypted,
      per_file_hashes: summary.per_file_hashes,
      tool,
      checks,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await interrupt.release();
  }
}

export async function verifyArchiveFile(from: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const src = await openArchiveFile(from);
  return verifyArchive(
    src,
    resolveOptions<VerifyOptions & { label: string }>({ label: from, archiveBytes: src.fileBytes }, opts),
  );
}
