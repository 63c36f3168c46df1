/**
 * The WAL-archive side of `dr restore | verify | drill --from LOCATION`: which meaning `--at` has,
 * and the point-in-time restore, verify and drill (src/archive/restore-point.ts does the work).
 *
 * `--at` has two meanings, told apart by `--from`: with `--latest` and no `--from` it is a backup
 * catalogue location (its newest backup); with `--from` naming a location that holds a WAL archive
 * (at least one generation record, `gen-<id>.json`) it is the instant to restore. A `--from` that
 * holds no generation record is a backup file or object, read as before; `--at`, `--at-seq` or
 * `--last-consistent` with it is a usage error, never a guess.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Command } from "../../../vendor/commander.js";
import { resolveAuditKeyPath } from "../../../audit/key.js";
import { holdsGenerations } from "../../../archive/catalog.js";
import type { ReadKeys } from "../../../archive/sealing.js";
// The archive reader (age among it), the drill, verify and the orchestrator's task files load
// when a point is restored, verified or drilled: `dr restore --from FILE` comes through here too,
// to learn that FILE is no WAL archive, and must not pay their start-up.
import type {
  PointRestoreOptions,
  PointRestoreResult,
  RestorePoint,
} from "../../../archive/restore-point.js";
import { entryTimeMs } from "../../../wal/entry.js";
import type { OrchestratorState } from "../../../state/reducer.js";
import { stopLockHolder } from "../../../orchestrator/control.js";
import type { DrillReport, DrillStep, StepVerdict } from "../../../dr/drill.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { isS3Url } from "../../../storage/location.js";
import { openCatalogue } from "../../../storage/open-store.js";
import type { BackupStore } from "../../../storage/store.js";
import { cleanupOnInterrupt } from "../../../workspace/interrupt.js";
import { Workspace } from "../../../workspace/layout.js";
import { Output, globalsOf } from "../../output.js";
import { resolveDecryptPassword, type PasswordFlags } from "../../password.js";
import { resolveIdentities } from "../../age-keys.js";
import { s3OptionsFrom, type RemoteFlags } from "./options.js";
import { shown } from "../../../workspace/shown-path.js";

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The instants `--at` takes: ISO-8601's four-digit years (a Date holds more, but prints them oddly or throws). */
const AT_MIN_MS = Date.parse("0000-01-01T00:00:00Z");
const AT_MAX_MS = Date.parse("9999-12-31T23:59:59.999Z");

/** `--at`: an ISO-8601 time (a zone is required) or `@<epoch seconds>`. */
export function parseAt(text: string): number {
  const epoch = /^@(\d+(?:\.\d+)?)$/.exec(text.trim());
  const ms = epoch
    ? entryTimeMs(Number(epoch[1]))
    : /(Z|[+-]\d\d:?\d\d)$/i.test(text.trim())
      ? Date.parse(text)
      : NaN;
  const day = /^(\d{4})-(\d\d)-(\d\d)/.exec(text.trim());
  if (!epoch && day && !Number.isNaN(ms)) {
    // Date.parse carries a day past the month's end into the next month (02-30 is 03-02).
    const days = new Date(Date.UTC(Number(day[1]), Number(day[2]), 0)).getUTCDate();
    if (Number(day[3]) > days)
      throw new UserError(`--at ${text}: no such day (${day[1]}-${day[2]} has ${days} days)`, ExitCode.USAGE);
  }
  if (Number.isNaN(ms)) {
    throw new UserError(
      `--at ${text}: from a WAL archive, --at is an instant: an ISO-8601 time with a zone (2026-12-03T22:15:00Z) or @<epoch seconds> (a backup catalogue location goes with --latest and no --from)`,
      ExitCode.USAGE,
    );
  }
  if (ms < AT_MIN_MS || ms > AT_MAX_MS)
    throw new UserError(
      `--at ${text}: out of range: an instant from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, or @<epoch seconds> up to @${Math.floor(AT_MAX_MS / 1000)} (seconds, not milliseconds or microseconds)`,
      ExitCode.USAGE,
    );
  return ms;
}

export function parsePoint(
  opts: { at?: string; atSeq?: string; latest?: boolean; generation?: string },
  where = "the location",
): RestorePoint {
  const generation = opts.generation !== undefined ? { generation: opts.generation } : {};
  const given = [opts.at, opts.atSeq, opts.latest].filter((v) => v !== undefined && v !== false).length;
  if (given !== 1)
    throw new UserError(
      `${where} holds a WAL archive: give exactly one of --at TIME, --at-seq RUN:SEQ and --latest`,
      ExitCode.USAGE,
    );
  if (opts.latest) return { kind: "latest", ...generation };
  if (opts.at !== undefined) return { kind: "time", atMs: parseAt(opts.at), text: opts.at, ...generation };
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*):(\d+)$/.exec(opts.atSeq!);
  if (!m)
    throw new UserError(
      `--at-seq ${opts.atSeq}: expected RUN:SEQ (run-20261203T221500000Z-ab12:417)`,
      ExitCode.USAGE,
    );
  return { kind: "seq", run: m[1]!, seq: Number(m[2]), ...generation };
}

/** The flags that name a point in a WAL archive, and what may not go with them. */
export interface PointFlags extends RemoteFlags, PasswordFlags {
  from?: string;
  at?: string;
  atSeq?: string;
  latest?: boolean;
  generation?: string;
  lastConsistent?: boolean;
  decrypt?: boolean;
  keyFile?: string;
  /** Flags of a backup source only: refused with a WAL archive. */
  sha256?: string;
  dryRun?: boolean;
  identityFile?: string;
}

export interface PointSource {
  store: BackupStore;
  point: RestorePoint;
}

/** The WAL archive at `text` (a folder or s3://bucket/prefix/), or undefined when it holds none. */
export async function walArchiveAt(text: string, opts: RemoteFlags): Promise<BackupStore | undefined> {
  if (!isS3Url(text)) {
    const st = await stat(text).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
  }
  const store = await openCatalogue(text, s3OptionsFrom(opts));
  return (await holdsGenerations(store)) ? store : undefined;
}

/**
 * Exit 2 for a `--from` that holds no WAL archive, saying what it is instead: nothing, a file
 * (`whenFile`) or a folder or bucket prefix (`whenLocation`).
 */
export async function noArchiveAt(
  command: string,
  from: string,
  whenLocation: string,
  whenFile = whenLocation,
): Promise<UserError> {
  const st = isS3Url(from) ? undefined : await stat(from).catch(() => null);
  const why = st === null ? `--from ${from}: no such file or folder` : st?.isFile() ? whenFile : whenLocation;
  return new UserError(`dr ${command}: ${why}`, ExitCode.USAGE);
}

const noArchive = (command: string, from: string, flag: string): Promise<UserError> =>
  noArchiveAt(
    command,
    from,
    `${from} holds no WAL archive (no gen-* object), so ${flag} names no point in it; the newest backup at a location is --latest --at LOCATION`,
  );

/**
 * The archive and point that `opts` name, or undefined when they name a backup (the meanings
 * `--from` and `--at` had before WAL archives). Exit 2 for a combination that fits neither.
 */
export async function pointSourceOf(command: string, opts: PointFlags): Promise<PointSource | undefined> {
  const pointOnly =
    opts.atSeq !== undefined
      ? "--at-seq"
      : opts.generation !== undefined
        ? "--generation"
        : opts.lastConsistent
          ? "--last-consistent"
          : "";
  if (opts.from === undefined) {
    if (pointOnly)
      throw new UserError(
        `dr ${command}: ${pointOnly} needs --from LOCATION naming a WAL archive`,
        ExitCode.USAGE,
      );
    return undefined;
  }
  const store = await walArchiveAt(opts.from, opts);
  if (!store) {
    if (pointOnly || opts.at !== undefined)
      throw await noArchive(command, opts.from, pointOnly || `--at ${opts.at}`);
    return undefined;
  }
  const refused: [string, unknown][] = [
    ["--dry-run (check a point with dr verify --from LOCATION)", opts.dryRun],
    ["--sha256", opts.sha256],
  ];
  for (const [flag, value] of refused)
    if (value !== undefined && value !== false)
      throw new UserError(
        `dr ${command}: ${flag} does not apply to a WAL archive (${store.root})`,
        ExitCode.USAGE,
      );
  return { store, point: parsePoint(opts, `dr ${command}: ${opts.from}`) };
}

/** Task files rebuilt from the point's state, before the swap (the archive ships no task files). */
async function materialize(root: string, state: OrchestratorState): Promise<void> {
  const { materializeFromWal } = await import("../../../orchestrator/materialize.js");
  await materializeFromWal(new Workspace(root), state, { moveMisplaced: true });
}

/** The password and identities a reader of a WAL archive was given (either may be absent). */
export async function readKeysOf(
  opts: PasswordFlags & { identityFile?: string; decrypt?: boolean },
): Promise<ReadKeys> {
  const { password } = await resolveDecryptPassword(opts, opts.decrypt);
  const identities = await resolveIdentities(opts.identityFile);
  return { ...(password !== undefined ? { password } : {}), ...(identities ? { identities } : {}) };
}

async function pointOptions(
  src: PointSource,
  opts: PointFlags,
  auditKeyPath: string,
): Promise<PointRestoreOptions> {
  return {
    ...(await readKeysOf(opts)),
    auditKeyPath,
    lastConsistent: opts.lastConsistent,
    source: src.store.root,
    finish: materialize,
  };
}

/** `dr restore --from ARCHIVE --at ...` (and its alias `dr archive-restore`). */
export async function restorePointCommand(
  cmd: Command,
  src: PointSource,
  opts: PointFlags & { force?: boolean; keep?: boolean },
): Promise<void> {
  const out = Output.of(cmd);
  const base = await pointOptions(src, opts, resolveAuditKeyPath({ keyFile: opts.keyFile }).path);
  const { restoreToPoint } = await import("../../../archive/restore-point.js");
  const r = await restoreToPoint(src.store, src.point, globalsOf(cmd).sdd, {
    ...base,
    stopLiveHolder: opts.force ? stopLockHolder : undefined,
    keep: opts.keep,
  });
  for (const w of r.warnings) out.warn(w);
  const { snapshot_restore: _inner, ...outcome } = r;
  out.result({ ok: true, ...outcome, at: iso(r.at) }, () => {
    out.line(`Restored ${shown(r.target)} as of ${iso(r.at)} (generation ${r.generation})`);
    out.line(`  snapshot ${r.snapshot}, then ${r.segments} segment(s), every hash checked`);
    for (const [run, pos] of Object.entries(r.wal)) out.line(`  WAL ${run} at seq ${pos.seq}`);
    if (r.broken) {
      out.warn(`stopped before a broken segment (--last-consistent): ${r.broken.reason}`);
      if (r.broken.at_seq)
        out.line(
          `  to restore this point again: --at-seq ${r.broken.at_seq} (the broken lines' times are unknown)`,
        );
    }
    if (r.kept) out.line(`  previous workspace kept at ${shown(r.kept)}`);
  });
}

const existing = async (p: string): Promise<string | undefined> =>
  (await stat(p).catch(() => undefined)) ? p : undefined;

/**
 * Restores the point into a scratch folder (or `keepDir`), runs `body` on it and removes the
 * scratch. The snapshot's audit key goes into the scratch too: the live key file is never touched.
 * `body` gets the audit key to check the restored chain with (the snapshot's, else the live one).
 */
async function atScratchPoint<T>(
  src: PointSource,
  opts: PointFlags,
  keepDir: string | undefined,
  body: (
    root: string,
    restore: () => Promise<PointRestoreResult>,
    keyFile: () => Promise<string | undefined>,
  ) => Promise<T>,
): Promise<T> {
  const dir = keepDir
    ? await (await import("../../../dr/drill.js")).makeKeepFolder(keepDir)
    : await mkdtemp(path.join(os.tmpdir(), "bernstein-point-"));
  const interrupt = keepDir
    ? undefined
    : cleanupOnInterrupt(`the scratch folder ${shown(dir)}`, () => rm(dir, { recursive: true, force: true }));
  try {
    const root = path.join(dir, "restored", ".sdd");
    const scratchKey = path.join(dir, "audit.key");
    const o = await pointOptions(src, opts, scratchKey);
    const { restoreToPoint } = await import("../../../archive/restore-point.js");
    const live = resolveAuditKeyPath({ keyFile: opts.keyFile }).path;
    return await body(
      root,
      () => restoreToPoint(src.store, src.point, root, o),
      // --key-file first, missing or not (verifyStateFolder fails the audit check on a missing
      // one, as for a backup file); else the key the snapshot carried; else the live one.
      async () => (opts.keyFile ? live : ((await existing(scratchKey)) ?? (await existing(live)))),
    );
  } finally {
    if (!keepDir) await rm(dir, { recursive: true, force: true }).catch(() => {});
    await interrupt?.release();
  }
}

/** `dr verify --from ARCHIVE --at ...`: the point rebuilt in a scratch folder and checked; nothing else written. */
export async function verifyPointCommand(cmd: Command, src: PointSource, opts: PointFlags): Promise<void> {
  const out = Output.of(cmd);
  const report = await atScratchPoint(src, opts, undefined, async (root, restore, keyFile) => {
    const r = await restore();
    const { verifyStateFolder } = await import("../../../dr/verify.js");
    const checks = await verifyStateFolder(root, { keyFile: await keyFile() });
    const { snapshot_restore: _inner, target: _scratch, kept: _none, ...point } = r;
    return {
      ok: checks.every((c) => c.status !== "failed"),
      location: src.store.root,
      ...point,
      at: iso(r.at),
      checks,
    };
  });
  out.result(report, () => {
    out.line(`Verify ${shown(report.location)} as of ${report.at} (generation ${report.generation}):`);
    out.line(`  snapshot ${report.snapshot}, then ${report.segments} segment(s), every hash checked`);
    for (const c of report.checks)
      out.line(
        `  [${c.status === "ok" ? "ok" : c.status === "skipped" ? "skip" : "FAIL"}] ${c.name}: ${c.detail}`,
      );
    if (report.broken)
      out.warn(`stopped before a broken segment (--last-consistent): ${report.broken.reason}`);
    for (const w of report.warnings) out.warn(w);
    out.line(report.ok ? "Point verified." : "VERIFICATION FAILED");
  });
  const failed = report.checks.find((c) => c.status === "failed");
  if (failed)
    out.failed(ExitCode.CHECK_FAILED, `dr verify ${report.location}: ${failed.name}: ${failed.detail}`);
}

export type RestoredDoctorRun = (
  sddDir: string,
  opts: { keyFile?: string },
) => Promise<{
  checks: { name: string; verdict: string; detail: string }[];
}>;

const verdict = (bad: { name: string; detail: string }[], passed: string) => ({
  ok: bad.length === 0,
  detail: bad.length ? `${bad.length} check(s) failed; first: ${bad[0]!.name}: ${bad[0]!.detail}` : passed,
});

interface PointDrill {
  steps: DrillStep[];
  restored?: PointRestoreResult;
  /** What failed a step, when it was a user-facing error (a broken segment: exit 5). */
  failure?: UserError;
}

/** The drill's steps on a point: restore (timed: the RTO), verify, doctor; stops at the first failure. */
async function drillSteps(src: PointSource, opts: PointFlags & { keep?: string }, doctor: RestoredDoctorRun) {
  const { runDrillStep } = await import("../../../dr/drill.js");
  const d: PointDrill = { steps: [] };
  const step = (name: string, fn: () => Promise<StepVerdict>): Promise<boolean> =>
    runDrillStep(d.steps, name, fn, (err) => {
      // A point outside the window, a missing or wrong key: the user's input, not a failed drill.
      if (
        err instanceof UserError &&
        (err.exitCode === ExitCode.USAGE || err.exitCode === ExitCode.BAD_PASSWORD)
      )
        throw err;
      if (err instanceof UserError) d.failure = err;
    });
  await atScratchPoint(src, opts, opts.keep, async (root, restore, keyFile) => {
    let ok = await step("restore", async () => {
      const r = (d.restored = await restore());
      return {
        ok: true,
        detail: `as of ${iso(r.at)}: snapshot then ${r.segments} segment(s), every hash checked`,
      };
    });
    ok &&= await step("verify", async () => {
      const { verifyStateFolder } = await import("../../../dr/verify.js");
      const checks = await verifyStateFolder(root, { keyFile: await keyFile() });
      const passed = `${checks.filter((c) => c.status === "ok").length} checks passed (WAL chains, audit chain, checkpoint)`;
      return verdict(
        checks.filter((c) => c.status === "failed"),
        passed,
      );
    });
    if (ok)
      await step("doctor", async () => {
        const checks = (await doctor(root, { keyFile: await keyFile() })).checks;
        return verdict(
          checks.filter((c) => c.verdict === "fail"),
          "all checks passed",
        );
      });
  });
  return d;
}

/** `dr drill --from ARCHIVE --at ...`: restore the point to scratch, verify it, run doctor, report. */
export async function drillPointCommand(
  cmd: Command,
  src: PointSource,
  opts: PointFlags & { keep?: string },
  doctor: RestoredDoctorRun,
  printDrill: (out: Output, report: DrillReport) => void,
): Promise<void> {
  const out = Output.of(cmd);
  const startedAt = new Date();
  const { steps, restored, failure } = await drillSteps(src, opts, doctor);
  const report: DrillReport & { point: Record<string, unknown> | null } = {
    ok: steps.length === 3 && steps.every((s) => s.ok),
    sdd: src.store.root,
    // The snapshot is an encrypted backup exactly when its generation is encrypted.
    encrypted: restored
      ? restored.snapshot_restore.encrypted
      : opts.decrypt === true || opts.identityFile !== undefined,
    started_at: startedAt.toISOString(),
    file_count: restored?.snapshot_restore.file_count ?? null,
    backup_sha256: restored?.snapshot_restore.sha256 ?? null,
    rto_ms: restored ? steps[0]!.duration_ms : null,
    steps,
    kept: opts.keep ? path.resolve(opts.keep) : null,
    audit_recorded: false,
    warnings: restored?.warnings ?? [],
    point: restored
      ? {
          generation: restored.generation,
          snapshot: restored.snapshot,
          at: iso(restored.at),
          wal: restored.wal,
        }
      : null,
  };
  for (const w of report.warnings) out.warn(w);
  out.result(report, () => {
    printDrill(out, report);
    if (report.point)
      out.line(`  Point: ${String(report.point.at)} of generation ${String(report.point.generation)}`);
  });
  if (!report.ok) {
    const s = steps.find((x) => !x.ok)!;
    out.failed(
      failure?.exitCode === ExitCode.CORRUPT ? ExitCode.CORRUPT : ExitCode.CHECK_FAILED,
      `dr drill failed: ${s.name}: ${s.detail}`,
    );
  }
}
