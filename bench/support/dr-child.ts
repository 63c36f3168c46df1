/**
 * One DR operation in its own process, for bench/dr.ts: prints {ms, peak_rss_mb} as JSON.
 *   dr-child.js backup SDD DEST [PASSWORD]
 *   dr-child.js restore ARCHIVE TARGET_SDD [PASSWORD]
 */
import { performance } from "node:perf_hooks";
import { backupToFile } from "../../src/dr/backup.js";
import { restoreFromFile } from "../../src/dr/restore.js";
import { Workspace } from "../../src/workspace/layout.js";

const [op, a, b, password] = process.argv.slice(2);
const t0 = performance.now();
let files: number;
if (op === "backup") {
  const r = await backupToFile(new Workspace(a!), b!, { password });
  files = r.file_count;
} else if (op === "restore") {
  const r = await restoreFromFile(a!, b!, { password, keep: false });
  files = r.file_count;
} else {
  throw new Error(`unknown op ${op}`);
}
const ms = performance.now() - t0;
process.stdout.write(
  JSON.stringify({ ms, files, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }) + "\n",
);
