/**
 * Reading a WAL archive: the listing behind `dr list --from URL [--check]`, and the aliases
 * `dr archive-list` (= dr list --from) and `dr archive-restore` (= dr restore --from ARCHIVE),
 * kept for scripts written before `dr list`/`dr restore` learnt WAL archives.
 */
import type { Command } from "../../vendor/commander.js";
import { checkArchive } from "../../archive/check.js";
import { historyOf, listArchive } from "../../archive/catalog.js";
import { KEY_NEEDED, type ReadKeys } from "../../archive/sealing.js";
import { generationWindow, type Gap } from "../../archive/window.js";
import { generationKey } from "../../archive/names.js";
import type { PasswordFlags } from "../password.js";
import { openCatalogue } from "../../storage/open-store.js";
import type { BackupStore } from "../../storage/store.js";
import { ExitCode } from "../../errors/errors.js";
import type { WalError } from "../../wal/chain.js";
import { describeSnapshotBreak } from "../../archive/archive-status.js";
import { Output } from "../output.js";
import { findDr } from "./dr-archive.js";
import { iso, parsePoint, readKeysOf, restorePointCommand, type PointFlags } from "./dr/archive-point.js";
import { addPasswordOptions, addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";
import { printable, shown, shownOnHost } from "../../workspace/shown-path.js";

interface GenerationJson {
  generation: string;
  /** The workspace it archives, `host:folder` from its record (null: no record): its history. */
  workspace: string | null;
  previous: string | null;
  cause: string | null;
  /** How its segments are stored: compressed ("br", "gzip") or as they are, sealed or not (docs/formats.md). */
  compression: string | null;
  encryption: "fernet" | "age" | null;
  /** Why its record cannot be read ("missing", or what is wrong with it); null when it can. */
  record_problem: string | null;
  /** Snapshot indexes that are there but cannot be read. */
  damaged_indexes: { key: string; reason: string }[];
  snapshots: { number: number; key: string; completed_at: string | null; wal_breaks?: WalError[] }[];
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

function registerList(dr: Command): void {
  const list = addRemoteOptions(
    dr
      .command("archive-list")
      .description(
        "alias of dr list --from ARCHIVE: a WAL archive's generations, snapshots, restorable windows and gaps",
      )
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .option(
        "--check",
        "download every segment once: sha256, size and WAL chain of each, continuity of all",
      ),
  );
  addPasswordOptions(list).action(async (opts: ListFlags, cmd: Command) => {
    await listWalArchive(
      cmd,
      await openCatalogue(opts.from, s3OptionsFrom(opts)),
      opts.check,
      await readKeysOf(opts),
    );
  });
}

/** `dr list --from ARCHIVE [--check]` (and its alias `dr archive-list`); with keys, `--check` opens encrypted segments too. */
export async function listWalArchive(
  cmd: Command,
  store: BackupStore,
  check?: boolean,
  keys?: ReadKeys,
): Promise<void> {
  const out = Output.of(cmd);
  const listing = await listArchive(store);
  const generations: GenerationJson[] = [];
  for (const g of listing.generations) {
    const w = await generationWindow(store, g);
    generations.push({
      generation: g.generation,
      workspace: g.record ? historyOf(g.record) : null,
      previous: g.record?.previous ?? null,
      cause: g.record?.cause ?? null,
      compression: g.record?.compression ?? null,
      encryption: g.record?.encryption?.scheme ?? null,
      record_problem: g.recordProblem ?? null,
      damaged_indexes: g.damaged.map((d) => ({ key: d.key, reason: d.reason })),
      snapshots: g.snapshots.map((s) => ({
        number: s.number,
        key: s.key,
        completed_at: iso(s.completed_at),
        ...(s.wal_breaks?.length ? { wal_breaks: s.wal_breaks } : {}),
      })),
      segments: w.segments,
      earliest: iso(w.earliest),
      latest: iso(w.latest),
      gaps: w.gaps,
    });
  }
  const checked = check ? await checkArchive(store, listing, keys) : undefined;
  const problems = checked?.problems;
  const ok = !problems || problems.length === 0;
  out.result(
    {
      ok,
      location: store.root,
      generations,
      ...(checked ? { problems, lines_unchecked: checked.unopened } : {}),
      foreign: listing.foreign,
    },
    () => {
      if (generations.length === 0) out.line(`${shown(store.root)}: no archive generation`);
      for (const [i, g] of generations.entries()) {
        const record = listing.generations[i]!.record;
        out.line(
          `${g.generation}  ${g.earliest ?? "-"} .. ${g.latest ?? "-"}  ${g.snapshots.length} snapshot(s), ${g.segments} segment(s)`,
        );
        if (record) out.line(`  workspace: ${shownOnHost(record.host, record.workspace)}`);
        if (g.cause) out.line(`  started: ${printable(g.cause)}`);
        if (g.record_problem !== null)
          out.line(
            `  DAMAGED record ${generationKey(g.generation)}: ${g.record_problem} (its segments cannot be read)`,
          );
        else out.line(`  segments: ${segmentForm(g)}`);
        for (const d of g.damaged_indexes) out.line(`  DAMAGED index ${d.key}: ${d.reason}`);
        for (const s of g.snapshots)
          for (const b of s.wal_breaks ?? [])
            out.line(`  DAMAGED snapshot ${s.number}: ${describeSnapshotBreak(b)} when it was taken`);
        for (const gap of g.gaps)
          out.line(`  GAP ${gap.stream}: ${gap.cause}${gap.next ? ` (before ${gap.next})` : ""}`);
      }
      for (const p of problems ?? []) out.line(`BROKEN ${p.segment}: ${p.reason}`);
      if (problems)
        out.line(
          ok
            ? "check: every generation is continuous, every segment and snapshot intact"
            : `check: ${problems.length} problem(s)`,
        );
      for (const u of checked?.unopened ?? [])
        out.line(
          `  ${u.generation}: its segments' lines were not checked, only their sha256 and links (${KEY_NEEDED[u.scheme]})`,
        );
    },
  );
  if (!ok) out.failed(ExitCode.CORRUPT, `${problems!.length} broken object(s) in ${store.root}`);
}

function segmentForm(g: GenerationJson): string {
  const sealed = { fernet: "encrypted with a password", age: "encrypted to age recipients" };
  const compressed: Record<string, string> = { br: "brotli", gzip: "gzip" };
  const compression = g.compression === null ? "uncompressed" : (compressed[g.compression] ?? g.compression);
  return [compression, g.encryption ? sealed[g.encryption] : "plain"].join(", ");
}

function registerRestore(dr: Command): void {
  const restore = addRemoteOptions(
    dr
      .command("archive-restore")
      .description("alias of dr restore --from ARCHIVE: the workspace (--sdd) as it was at an instant")
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .option("--at <time>", "the instant: ISO-8601 with a zone, or @<epoch seconds>")
      .option("--at-seq <run:seq>", "right after this WAL entry")
      .option("--generation <id>", "the point of this generation only (where windows overlap)")
      .option("--latest", "the newest point the archive holds")
      .option(
        "--last-consistent",
        "on a broken segment, restore the last instant before it instead of failing",
      )
      .option("--decrypt", "the archive is encrypted with a password (needs one)"),
  );
  addPasswordOptions(restore).action(async (opts: PointFlags & { from: string }, cmd: Command) => {
    const store = await openCatalogue(opts.from, s3OptionsFrom(opts));
    await restorePointCommand(cmd, { store, point: parsePoint(opts, opts.from) }, opts);
  });
}

export function registerDrArchiveRead(program: Command): void {
  const dr = findDr(program);
  registerList(dr);
  registerRestore(dr);
}
