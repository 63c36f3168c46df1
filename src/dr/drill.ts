/**
 * `dr drill`: the restore drill, automated and timed. Backup to a scratch folder,
 * dry-run it, compare the counts, restore into scratch (its duration is the measured RTO),
 * compare every restored file with the live workspace (files not changed since the backup
 * started), run the doctor checks on the restored copy, and record the result in
 * `runs/drills.jsonl` and the audit log.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { rm, stat } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { resolveAuditKeyPath } from "../audit/key.js";
import { durableAppendLines, durableMkdir, makeDestinationFolder } from "../workspace/durable.js";
import { counted } from "../workspace/counted.js";
import { cleanupOnInterrupt } from "../workspace/interrupt.js";
import type { Workspace } from "../workspace/layout.js";
import { recordAuditEvent } from "./audit-event.js";
import type { BackupFileResult } from "./backup.js";
import type { KeyCache } from "./fernet.js";
import { runBackupJob } from "./backup-job.js";
import { AUDIT_KEY_ENTRY } from "./manifest.js";
import {
  inspectArchive,
  openArchiveFile,
  readRestoreRecord,
  RESTORE_RECORD,
  restoreFromFile,
} from "./restore.js";
import { restoredMode, umaskOf } from "./restored-mode.js";
import { makeScratchDir, removeDeadScratchDirs } from "./scratch-dir.js";
import { verifyStateFolder, type Check } from "./verify.js";
import { walkWorkspace } from "./walk.js";
import { shown } from "../workspace/shown-path.js";
import { fsPath } from "../workspace/raw-name.js";

export interface StepVerdict {
  ok: boolean;
  detail: string;
}

/**
 * Runs one drill step, timed, and adds it to `steps`; a throw is a failed step with its message,
 * after `caught` has seen the error (which may rethrow it: a user's mistake is not a failed drill).
 */
export async function runDrillStep(
  steps: DrillStep[],
  name: string,
  fn: () => Promise<StepVerdict>,
  caught: (err: unknown) => void = () => {},
): Promise<boolean> {
  const t0 = performance.now();
  let r: StepVerdict;
  try {
    r = await fn();
  } catch (err) {
    caught(err);
    r = { ok: false, detail: (err as Error).message };
  }
  steps.push({ name, ok: r.ok, duration_ms: Math.round(performance.now() - t0), detail: r.detail });
  return r.ok;
}

/**
 * The orchestrator's doctor, run on the restored copy. Passed in by the caller: DR sits below the
 * orchestrator in the layering (docs/ARCHITECTURE.md).
 */
export type RestoredDoctor = (
  sddDir: string,
  opts: { keyFile?: string },
) => Promise<{ checks: { name: string; verdict: string; detail: string }[] }>;

export interface DrillStep {
  name: string;
  ok: boolean;
  duration_ms: number;
  detail: string;
}
export interface DrillReport {
  ok: boolean;
  sdd: string;
  encrypted: boolean;
  started_at: string;
  file_count: number | null;
  backup_sha256: string | null;
  rto_ms: number | null;
  steps: DrillStep[];
  kept: string | null;
  audit_recorded: boolean;
  warnings: string[];
}

function hashPrefix(file: string | Buffer, length: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const h = createHash("sha256");
    const buf = Buffer.allocUnsafe(1024 * 1024);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, length - done), done);
      if (n === 0) return undefined;
      h.update(buf.subarray(0, n));
      done += n;
    }
    return h.digest("hex");
  } finally {
    closeSync(fd);
  }
}

/**
 * A drill's `--keep DIR` (made when missing, kept as it is when there), or exit 6 naming it: a
 * file in its place, a file system that refuses new entries (/proc), a read-only one.
 */
export async function makeKeepFolder(keepDir: string): Promise<string> {
  const abs = path.resolve(keepDir);
  await makeDestinationFolder(abs, `--keep ${keepDir}`);
  return abs;
}

export async function runDrill(
  ws: Workspace,
  opts: {
    keepDir?: string;
    password?: string;
    /** Drill with a backup to these age recipients, restored with `identities`. */
    recipients?: readonly string[];
    identities?: readonly string[];
    doctor: RestoredDoctor;
  },
): Promise<DrillReport> {
  const encrypted = opts.password !== undefined || Boolean(opts.recipients?.length);
  // One key cache for the dry run and the restore: the second read of the archive reuses the key.
  const keys = { password: opts.password, identities: opts.identities, keyCache: new Map() as KeyCache };
  const startedAt = new Date();
  if (!opts.keepDir) await removeDeadScratchDirs();
  const scratch = opts.keepDir ? await makeKeepFolder(opts.keepDir) : await makeScratchDir("drill");
  const interrupt = opts.keepDir
    ? undefined
    : cleanupOnInterrupt(`the drill's scratch folder ${shown(scratch)}`, () =>
        rm(scratch, { recursive: true, force: true, maxRetries: 5 }),
      );
  const report: DrillReport = {
    ok: false,
    sdd: ws.root,
    encrypted,
    started_at: startedAt.toISOString(),
    file_count: null,
    backup_sha256: null,
    rto_ms: null,
    steps: [],
    kept: opts.keepDir ? scratch : null,
    audit_recorded: false,
    warnings: [],
  };
  const step = (name: string, fn: () => Promise<StepVerdict>): Promise<boolean> =>
    runDrillStep(report.steps, name, fn);
  const archiveBase = path.join(scratch, `drill-${startedAt.toISOString().replace(/[-:.]/g, "")}.tar.gz`);
  const restored = path.join(scratch, "restored", ".sdd");
  const backupStartMs = Date.now();
  const keyPath = resolveAuditKeyPath().path;
  let backup: BackupFileResult | undefined;
  try {
    let ok = await step("backup", async () => {
      // The backup a real `dr backup` takes, but not one of record: it is removed with the scratch.
      const job = await runBackupJob(ws, {
        to: archiveBase,
        password: opts.password,
        recipients: opts.recipients,
        auditKeyPath: keyPath,
        record: false,
      });
      backup = job.archive;
      report.file_count = backup.file_count;
      report.backup_sha256 = backup.sha256;
      report.warnings.push(...job.warnings);
      return { ok: true, detail: `Files: ${backup.file_count}, ${backup.size_bytes} bytes` };
    });
    ok &&= await step("dry-run", async () => {
      const s = await inspectArchive(await openArchiveFile(backup!.path), {
        ...keys,
        label: backup!.path,
      });
      const same = s.file_count === backup!.file_count && s.sha256 === backup!.sha256;
      return {
        ok: same,
        detail: same
          ? `Files: ${s.file_count} matches the backup's count`
          : `Files: ${s.file_count} but the backup reported ${backup!.file_count}`,
      };
    });
    ok &&= await step("restore", async () => {
      await durableMkdir(path.dirname(restored));
      const r = await restoreFromFile(backup!.path, restored, { ...keys, keep: false });
      return {
        ok: r.file_count === backup!.file_count,
        detail: `Files: ${r.file_count} restored, hash-checked and fsynced`,
      };
    });
    if (ok) report.rto_ms = report.steps[report.steps.length - 1]!.duration_ms;
    ok &&= await step("compare", async () => {
      let compared = 0;
      let changed = 0;
      const bad: string[] = [];
      const restoreRecord = RESTORE_RECORD.join("/");
      // A restore masks modes (restored-mode.ts): the restored copy has the masked ones.
      const umask = umaskOf(scratch);
      for (const f of backup!.manifest.files) {
        if (f.path === AUDIT_KEY_ENTRY) continue;
        if (f.path === restoreRecord) {
          // A workspace that was itself restored carries the record of that restore; the drill's
          // restore writes its own over it, so it differs by design: it must name this archive.
          const record = await readRestoreRecord(restored);
          if (record?.archive_sha256 !== backup!.sha256) bad.push(`${f.path} (not this drill's restore)`);
          else compared++;
          continue;
        }
        const restoredSha = hashPrefix(fsPath(restored, f.path), f.size);
        const rst = await stat(fsPath(restored, f.path)).catch(() => undefined);
        if (
          restoredSha !== f.sha256 ||
          !rst ||
          rst.size !== f.size ||
          (rst.mode & 0o777) !== restoredMode(f.mode, umask)
        ) {
          bad.push(f.path);
          continue;
        }
        const live = await stat(fsPath(ws.root, f.path)).catch(() => undefined);
        if (!live || live.mtimeMs >= backupStartMs) {
          changed++; // changed (or gone) since the backup started: not comparable
          continue;
        }
        if (
          hashPrefix(fsPath(ws.root, f.path), f.size) !== f.sha256 ||
          (live.mode & 0o777) !== (f.mode & 0o777)
        ) {
          bad.push(f.path);
          continue;
        }
        compared++;
      }
      const restoredFiles = walkWorkspace(restored).files.map((f) => f.rel);
      const expected = new Set(backup!.manifest.files.map((f) => f.path));
      const extra = restoredFiles.filter((r) => !expected.has(r) && r !== restoreRecord);
      if (extra.length) bad.push(...extra.map((e) => `${e} (not in the backup)`));
      return {
        ok: bad.length === 0,
        detail: bad.length
          ? `${bad.length} file(s) differ; first: ${bad[0]}`
          : `${counted(compared, "file")} identical to the live workspace (content and mode)${changed ? `, ${changed} changed since the backup started` : ""}; ${notCompared(backup!.manifest.files)}`,
      };
    });
    ok &&= await step("doctor", async () => {
      const checks: Check[] = [
        ...(await verifyStateFolder(restored, {
          manifest: backup!.manifest,
          // The live key (the drill never installs the archive's key over it).
          keyFile: (await stat(keyPath).catch(() => undefined)) ? keyPath : undefined,
        })),
      ];
      // The orchestrator's doctor on the restored copy (its own checks, version record included).
      const doctor = await opts.doctor(restored, {
        keyFile: (await stat(keyPath).catch(() => undefined)) ? keyPath : undefined,
      });
      for (const c of doctor.checks) {
        checks.push({
          name: `doctor ${c.name}`,
          status: c.verdict === "fail" ? "failed" : "ok",
          detail: c.detail,
        });
      }
      const failed = checks.filter((c) => c.status === "failed");
      return {
        ok: failed.length === 0,
        detail: failed.length
          ? `${failed.length} check(s) failed; first: ${failed[0]!.name}: ${failed[0]!.detail}`
          : `${checks.filter((c) => c.status === "ok").length} checks passed on the restored copy`,
      };
    });
    report.ok = ok && report.steps.every((s) => s.ok);
  } finally {
    if (!opts.keepDir) await rm(scratch, { recursive: true, force: true }).catch(() => {});
    await interrupt?.release();
  }
  const row = {
    created_at: startedAt.toISOString(),
    ok: report.ok,
    encrypted: report.encrypted,
    file_count: report.file_count,
    backup_sha256: report.backup_sha256,
    rto_ms: report.rto_ms,
    steps: report.steps.map((s) => ({ name: s.name, ok: s.ok, duration_ms: s.duration_ms })),
  };
  await durableMkdir(ws.runsDir);
  await durableAppendLines(path.join(ws.runsDir, "drills.jsonl"), JSON.stringify(row) + "\n");
  const audit = await recordAuditEvent(ws, {
    event_type: "dr.drill",
    resource_type: "drill",
    resource_id: report.started_at,
    details: {
      ok: report.ok,
      file_count: report.file_count,
      rto_ms: report.rto_ms,
      backup_sha256: report.backup_sha256,
    },
  });
  report.audit_recorded = audit.recorded;
  if (audit.warning) report.warnings.push(audit.warning);
  return report;
}

/**
 * What `Files: N` counts beside the compared files, so the step's numbers add up: the manifest
 * (checked by the restore) and, in an encrypted backup, the audit key (never extracted, the live
 * one is kept).
 */
function notCompared(files: readonly { path: string }[]): string {
  return files.some((f) => f.path === AUDIT_KEY_ENTRY)
    ? "not compared: manifest.json and the audit key (the restore checks them; the live key is kept)"
    : "not compared: manifest.json (the restore checks it)";
}
