/**
 * `bernstein dr archive-compact --from URL`: merges runs of small consecutive segments of a WAL
 * archive into larger ones (src/archive/compact.ts). Safe beside a running `dr archive` (which
 * compacts its own generation in the background the same way) and against a kill at any moment.
 * Encrypted generations are compacted when the password or an identity that opens them is given,
 * and skipped (named) otherwise.
 */
import { Option, type Command } from "../../vendor/commander.js";
import { listArchive } from "../../archive/catalog.js";
import { compactArchive } from "../../archive/compact.js";
import { openCatalogue } from "../../storage/open-store.js";
import { DEFAULT_COMPACT_TARGET_BYTES, MIN_COMPACT_TARGET_BYTES } from "../archive-options.js";
import { sizeOption } from "../number-option.js";
import { Output } from "../output.js";
import type { PasswordFlags } from "../password.js";
import { findDr } from "./dr-archive.js";
import { readKeysOf } from "./dr/archive-point.js";
import { addPasswordOptions, addRemoteOptions, s3OptionsFrom, type RemoteFlags } from "./dr/options.js";

interface CompactFlags extends RemoteFlags, PasswordFlags {
  from: string;
  targetSize: number;
  identityFile?: string;
}

export function registerDrArchiveCompact(program: Command): void {
  const compact = addRemoteOptions(
    findDr(program)
      .command("archive-compact")
      .description(
        "merge a WAL archive's small consecutive segments into larger ones (restorable throughout)",
      )
      .requiredOption("--from <location>", "archive location: a folder or s3://bucket/prefix/")
      .addOption(
        new Option(
          "--target-size <size>",
          "merged segments grow up to this size; larger segments are left alone",
        )
          .argParser(sizeOption("--target-size", MIN_COMPACT_TARGET_BYTES))
          .default(DEFAULT_COMPACT_TARGET_BYTES, "8MiB"),
      ),
  );
  addPasswordOptions(compact).action(async (opts: CompactFlags, cmd: Command) => {
    const out = Output.of(cmd);
    const store = await openCatalogue(opts.from, s3OptionsFrom(opts));
    const r = await compactArchive(store, await listArchive(store), {
      targetBytes: opts.targetSize,
      keys: await readKeysOf(opts),
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
