/**
 * A restore is a short CPU-bound burst; with V8's default interrupt budget its optimizing
 * compiler spends the burst compiling functions whose hot phase is over, on the core the
 * extraction needs. A larger budget optimizes only what stays hot. Applied only on the V8
 * major it was tuned for: another V8 may not know the flag and would print an error.
 */
import v8 from "node:v8";

const TUNED_FOR_V8_MAJOR = 11;
let applied = false;

/** Called before a streaming read of an archive starts (restore, dry run, verify). */
export function tuneForShortBursts(): void {
  if (applied) return;
  applied = true;
  if (Number(process.versions.v8.split(".")[0]) !== TUNED_FOR_V8_MAJOR) return;
  v8.setFlagsFromString("--interrupt-budget=1000000");
}
