/**
 * Short CPU-bound bursts and V8's optimizing compiler. A restore of the seed-sized workspace
 * is 0.6 s of work that keeps both cores of a small machine busy (decryption, gunzip, parsing
 * and hashing on one thread, file creation on another). With V8's default interrupt budget
 * (67,584) TurboFan compiles ~50 functions meanwhile: ~150 ms of CPU on V8's helper thread,
 * taken from the extraction, mostly for code ready only after its hot phase. With 1,000,000
 * only what stays hot is optimized: bench:dr's restore went from 0.68 to 0.61 s (fastest of
 * 11 each; 400,000 gave 0.64 and 2,000,000 0.65). Long runs (a 2 GB file) tier up a few
 * milliseconds later, which they do not notice.
 *
 * Only on the V8 it was measured on (Node 20's): a V8 without this flag would print an error.
 */
import v8 from "node:v8";

const MEASURED_ON_V8_MAJOR = 11;
let applied = false;

/** Called before a streaming read of an archive starts (restore, dry run, verify). */
export function tuneForShortBursts(): void {
  if (applied) return;
  applied = true;
  if (Number(process.versions.v8.split(".")[0]) !== MEASURED_ON_V8_MAJOR) return;
  v8.setFlagsFromString("--interrupt-budget=1000000");
}
