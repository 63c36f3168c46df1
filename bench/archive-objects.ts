/**
 * Objects and bytes a WAL archive costs per day at 1 decision/s, before and after compaction
 * (the measurement: bench/support/archive-objects.ts).
 *
 * Usage: npm run bench:archive-objects -- --json [--seconds N] [--target-size-mb 8]
 */
import { archiveObjectsPerDay } from "./support/archive-objects.js";
import { JSON_OUTPUT, benchOptions } from "./support/options.js";

const options = benchOptions({
  invocation: "npm run bench:archive-objects --",
  about: "Objects and bytes a WAL archive costs per day at 1 decision/s, before and after compaction.",
  options: {
    json: JSON_OUTPUT,
    seconds: {
      kind: "number",
      default: 600,
      min: 1,
      help: "simulated seconds of decisions (scaled to a day)",
    },
    "target-size-mb": { kind: "number", default: 8, min: 0.001, help: "compaction's target object size" },
  },
});
const json = options.json;
const seconds = options.seconds;
const targetBytes = Math.round(options["target-size-mb"] * 1024 * 1024);

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
