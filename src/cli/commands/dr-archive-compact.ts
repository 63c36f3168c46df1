/**
 * `bernstein dr archive-compact --from URL`: merges runs of small consecutive segments of a WAL
 * archive into larger ones (src/archive/compact.ts). Safe beside a running `dr archive` (it only
 * touches segments already stored) and against a kill at any moment; not beside another
 * compaction or a prune of the same location.
 */
import type { Command } from "commander";
import { listArchive } from "../../archive/catalog.js";
import { compactArchive } from "../../archive/compact.js";
import { openCatalogue } from "../../storage/open-store.js";
import { sizeOption } from "../number-option.js";
import { Output } from "../output.js";
import { findDr } from "./dr-archive.js";
import { addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";

export const DEFAULT_TARGET_BYTES = 8 * 1024 * 1024;

export function registerDrArchiveCompact(program: Command): void {
  addRemoteOptions(
    findDr(program)
      .command("archive-compact")
      .description(
        "merge a WAL archive's small consecutive segments into larger ones (restorable throughout)",
      )
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .option(
        "--target-size <size>",
        "merged segments grow up to this size; larger segments are left alone",
        sizeOption("--target-size", 1024),
        DEFAULT_TARGET_BYTES,
      ),
  ).action(async (opts: RemoteFlags & { from: string; targetSize: number }, cmd: Command) => {
    const out = Output.of(cmd);
    const store = await openCatalogue(opts.from, s3OptionsFrom(opts));
    const r = await compactArchive(store, await listArchive(store), {
      targetBytes: opts.targetSize,
      onMerged: (m) => out.line(`merged ${m.replaced.length} segments into ${m.key} (${m.bytes} bytes)`),
    });
    out.result({ ok: true, location: store.root, target_bytes: opts.targetSize, ...r }, () => {
      if (r.leftovers.length)
        out.line(`deleted ${r.leftovers.length} segment(s) an earlier, interrupted compaction had merged`);
      for (const s of r.skipped) out.line(`skipped ${s.generation}: ${s.reason}`);
      out.line(`${r.segments_before} segment(s) before, ${r.segments_after} after`);
    });
  });
}
