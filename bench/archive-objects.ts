/**
 * Objects and bytes a WAL archive costs per day at 1 decision/s, before and after compaction
 * (the measurement: bench/support/archive-objects.ts).
 *
 * Usage: npm run bench:archive-objects -- --json [--seconds N] [--target-size-mb 8]
 */
import { archiveObjectsPerDay } from "./support/archive-objects.js";

const args = process.argv.slice(2);
const json = args.includes("--json");
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const seconds = flag("--seconds", 600);
const targetBytes = Math.round(flag("--target-size-mb", 8) * 1024 * 1024);

const r = await archiveObjectsPerDay(seconds, targetBytes);
if (json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
else
  process.stdout.write(
    `archive at 1 decision/s (${r.simulated_seconds}s run scaled to a day): ` +
      `${r.before_per_day.objects} objects, ${r.before_per_day.bytes} bytes/day before compaction; ` +
      `${r.after_per_day.objects} objects, ${r.after_per_day.bytes} bytes/day after (target ${r.target_bytes} bytes); ` +
      `${r.background_per_day.objects} objects with the archiver's background compaction ` +
      `(${r.background_per_day.compaction_rewritten_bytes} bytes/day rewritten)\n`,
  );
