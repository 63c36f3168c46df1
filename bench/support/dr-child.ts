/**
 * One DR operation in its own process, for bench/dr.ts: prints {ms, peak_rss_mb} as JSON. Each
 * operation loads only its own modules, as the CLI does; `ms` starts after they are loaded.
 *   dr-child.js backup SDD DEST [PASSWORD]
 *   dr-child.js restore ARCHIVE TARGET_SDD [PASSWORD]
 */
import { performance } from "node:perf_hooks";
import { Workspace } from "../../src/workspace/layout.js";

const [op, a, b, password] = process.argv.slice(2);
let run: () => Promise<{ file_count: number }>;
if (op === "backup") {
  const { backupToFile } = await import("../../src/dr/backup.js");
  run = () => backupToFile(new Workspace(a!), b!, { password });
} else if (op === "restore") {
  const { restoreFromFile } = await import("../../src/dr/restore.js");
  run = () => restoreFromFile(a!, b!, { password, keep: false });
} else {
  throw new Error(`unknown op ${op}`);
}
const t0 = performance.now();
const { file_count: files } = await run();
const ms = performance.now() - t0;
process.stdout.write(
  JSON.stringify({ ms, files, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }) + "\n",
);
