/**
 * One DR operation in its own process, for bench/dr.ts: prints {ms, peak_rss_mb} as JSON. Each
 * operation loads only its own modules, as the CLI does; `ms` starts after they are loaded.
 *   dr-child.js backup SDD DEST [PASSWORD]
 *   dr-child.js restore ARCHIVE TARGET_SDD [PASSWORD]
 *   dr-child.js rekey ARCHIVE IDENTITY RECIPIENT SDD   (.age header rewrite, replacing the set;
 *     the payload's sha256 carried over from the archive's newest catalogue row in SDD)
 * (bench keys only: real identities never belong in argv.)
 */
import { performance } from "node:perf_hooks";
import { Workspace } from "../../src/workspace/layout.js";

const [op, a, b, key] = process.argv.slice(2);
let run: () => Promise<{ file_count: number }>;
if (op === "backup") {
  const { backupToFile } = await import("../../src/dr/backup.js");
  run = () => backupToFile(new Workspace(a!), b!, { password: key });
} else if (op === "restore") {
  const { restoreFromFile } = await import("../../src/dr/restore.js");
  run = () => restoreFromFile(a!, b!, { password: key, keep: false });
} else if (op === "rekey") {
  const { rekeyAgeFile } = await import("../../src/dr/age/rekey.js");
  const { newestRows } = await import("../../src/dr/rekey.js");
  const { splitHashesOf } = await import("../../src/dr/age/split-hash.js");
  run = async () => {
    const row = (await newestRows(new Workspace(process.argv[6]!))).get(a!);
    const split = splitHashesOf(row);
    if (!split) throw new Error(`${a}: no catalogue row with split hashes`);
    const r = await rekeyAgeFile(a!, {
      identities: [b!],
      recipients: [key!],
      keepExisting: false,
      recorded: { split, size_bytes: row!.size_bytes },
    });
    if (r.payload_read || !r.in_place) throw new Error("the bench rekey read the payload");
    return { file_count: 0 };
  };
} else {
  throw new Error(`unknown op ${op}`);
}
const t0 = performance.now();
const { file_count: files } = await run();
const ms = performance.now() - t0;
process.stdout.write(
  JSON.stringify({ ms, files, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }) + "\n",
);
