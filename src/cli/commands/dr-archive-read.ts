/**
 * The commands that read a WAL archive: `dr archive-list --from URL [--check]` and
 * `dr archive-restore --from URL --at TIME | --at-seq RUN:SEQ | --latest` (point-in-time restore).
 */
import type { Command } from "commander";
import { resolveAuditKeyPath } from "../../audit/key.js";
import { checkArchive } from "../../archive/check.js";
import { listArchive } from "../../archive/catalog.js";
import { restoreToPoint, type RestorePoint } from "../../archive/restore-point.js";
import type { ReadKeys } from "../../archive/sealing.js";
import { generationWindow, type Gap } from "../../archive/window.js";
import { resolveDecryptPassword, type PasswordFlags } from "../password.js";
import { materializeFromWal } from "../../orchestrator/materialize.js";
import { loadState } from "../../checkpoint/load-state.js";
import { openCatalogue } from "../../storage/open-store.js";
import { Workspace } from "../../workspace/layout.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { findDr } from "./dr-archive.js";
import { resolveIdentities } from "../age-keys.js";
import { addPasswordOptions, addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** `--at`: an ISO-8601 time (a zone is required) or `@<epoch seconds>`. */
export function parseAt(text: string): number {
  const epoch = /^@(\d+(?:\.\d+)?)$/.exec(text.trim());
  const ms = epoch
    ? Math.round(Number(epoch[1]) * 1000)
    : /(Z|[+-]\d\d:?\d\d)$/i.test(text.trim())
      ? Date.parse(text)
      : NaN;
  if (Number.isNaN(ms)) {
    throw new UserError(
      `--at ${text}: expected an ISO-8601 time with a zone (2026-12-03T22:15:00Z) or @<epoch seconds>`,
      ExitCode.USAGE,
    );
  }
  return ms;
}

export function parsePoint(opts: { at?: string; atSeq?: string; latest?: boolean }): RestorePoint {
  const given = [opts.at, opts.atSeq, opts.latest].filter((v) => v !== undefined && v !== false).length;
  if (given !== 1)
    throw new UserError("give exactly one of --at TIME, --at-seq RUN:SEQ and --latest", ExitCode.USAGE);
  if (opts.latest) return { kind: "latest" };
  if (opts.at !== undefined) return { kind: "time", atMs: parseAt(opts.at) };
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*):(\d+)$/.exec(opts.atSeq!);
  if (!m)
    throw new UserError(
      `--at-seq ${opts.atSeq}: expected RUN:SEQ (run-20261203T221500000Z-ab12:417)`,
      ExitCode.USAGE,
    );
  return { kind: "seq", run: m[1]!, seq: Number(m[2]) };
}

interface GenerationJson {
  generation: string;
  previous: string | null;
  cause: string | null;
  snapshots: { number: number; key: string; completed_at: string | null }[];
  segments: number;
  earliest: string | null;
  latest: string | null;
  gaps: Gap[];
}

interface ListFlags extends RemoteFlags, PasswordFlags {
  from: string;
  check?: boolean;
  identityFile?: string;
}

/** The password and identities a reader was given (either may be absent). */
async function readKeysOf(
  opts: PasswordFlags & { identityFile?: string; decrypt?: boolean },
): Promise<ReadKeys> {
  const { password } = await resolveDecryptPassword(opts, opts.decrypt);
  const identities = await resolveIdentities(opts.identityFile);
  return { ...(password !== undefined ? { password } : {}), ...(identities ? { identities } : {}) };
}

function registerList(dr: Command): void {
  const list = addRemoteOptions(
    dr
      .command("archive-list")
      .description("a WAL archive's generations, snapshots, restorable windows and gaps")
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .option(
        "--check",
        "download every segment once: sha256, size and WAL chain of each, continuity of all",
      ),
  );
  addPasswordOptions(list).action(async (opts: ListFlags, cmd: Command) => {
    const out = Output.of(cmd);
    const store = await openCatalogue(opts.from, s3OptionsFrom(opts));
    const listing = await listArchive(store);
    const generations: GenerationJson[] = [];
    for (const g of listing.generations) {
      const w = await generationWindow(store, g);
      generations.push({
        generation: g.generation,
        previous: g.record?.previous ?? null,
        cause: g.record?.cause ?? null,
        snapshots: g.snapshots.map((s) => ({
          number: s.number,
          key: s.key,
          completed_at: iso(s.completed_at),
        })),
        segments: w.segments,
        earliest: iso(w.earliest),
        latest: iso(w.latest),
        gaps: w.gaps,
      });
    }
    // With a key, encrypted segments are opened and their lines checked too.
    const problems = opts.check ? await checkArchive(store, listing, await readKeysOf(opts)) : undefined;
    const ok = !problems || problems.length === 0;
    out.result(
      { ok, location: store.root, generations, ...(problems ? { problems } : {}), foreign: listing.foreign },
      () => {
        if (generations.length === 0) out.line(`${store.root}: no archive generation`);
        for (const g of generations) {
          out.line(
            `${g.generation}  ${g.earliest ?? "-"} .. ${g.latest ?? "-"}  ${g.snapshots.length} snapshot(s), ${g.segments} segment(s)`,
          );
          if (g.cause) out.line(`  started: ${g.cause}`);
          for (const gap of g.gaps)
            out.line(`  GAP ${gap.stream}: ${gap.cause}${gap.next ? ` (before ${gap.next})` : ""}`);
        }
        for (const p of problems ?? []) out.line(`BROKEN ${p.segment}: ${p.reason}`);
        if (problems)
          out.line(
            ok
              ? "check: every generation is continuous, every segment intact"
              : `check: ${problems.length} problem(s)`,
          );
      },
    );
    if (!ok) out.failed(ExitCode.CORRUPT, `${problems!.length} broken segment(s) in ${store.root}`);
  });
}

interface RestoreFlags extends RemoteFlags, PasswordFlags {
  from: string;
  at?: string;
  atSeq?: string;
  latest?: boolean;
  lastConsistent?: boolean;
  decrypt?: boolean;
  identityFile?: string;
}

function registerRestore(dr: Command): void {
  const restore = addRemoteOptions(
    dr
      .command("archive-restore")
      .description("restore the workspace (--sdd) as it was at an instant, from a WAL archive")
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .option("--at <time>", "the instant: ISO-8601 with a zone, or @<epoch seconds>")
      .option("--at-seq <run:seq>", "right after this WAL entry")
      .option("--latest", "the newest point the archive holds")
      .option(
        "--last-consistent",
        "on a broken segment, restore the last instant before it instead of failing",
      )
      .option("--decrypt", "the archive is encrypted with a password (needs one)"),
  );
  addPasswordOptions(restore).action(async (opts: RestoreFlags, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const point = parsePoint(opts);
    const keys = await readKeysOf(opts);
    const store = await openCatalogue(opts.from, s3OptionsFrom(opts));
    const r = await restoreToPoint(store, point, g.sdd, {
      ...keys,
      auditKeyPath: resolveAuditKeyPath().path,
      lastConsistent: opts.lastConsistent,
      source: store.root,
      finish: async (root) => {
        const ws = new Workspace(root);
        const { state } = await loadState(ws);
        await materializeFromWal(ws, state, { moveMisplaced: true });
      },
    });
    const { snapshot_restore: _inner, ...shown } = r;
    out.result({ ok: true, ...shown, at: iso(r.at) }, () => {
      out.line(`Restored ${r.target} as of ${iso(r.at)} (generation ${r.generation})`);
      out.line(`  snapshot ${r.snapshot}, then ${r.segments} segment(s), every hash checked`);
      for (const [run, pos] of Object.entries(r.wal)) out.line(`  WAL ${run} at seq ${pos.seq}`);
      if (r.broken) out.warn(`stopped before a broken segment (--last-consistent): ${r.broken.reason}`);
      if (r.kept) out.line(`  previous workspace kept at ${r.kept}`);
    });
  });
}

export function registerDrArchiveRead(program: Command): void {
  const dr = findDr(program);
  registerList(dr);
  registerRestore(dr);
}
