/**
 * Child of restore-memory.test.ts: restores ARCHIVE into TARGET (a `.sdd` folder) and prints its
 * own peak RSS as one JSON line. Run with bin/bernstein's Node flags, as a user's restore runs.
 *
 * Usage: node restore-rss-child.js ARCHIVE TARGET
 */
import { restoreFromFile } from "../../../src/dr/restore.js";

const [archive, target] = process.argv.slice(2) as [string, string];
await restoreFromFile(archive, target, { keep: false });
process.stdout.write(JSON.stringify({ peak_rss_mb: process.resourceUsage().maxRSS / 1024 }) + "\n");
