/**
 * How many files a backup may hold open between its two passes. Keeping a file's descriptor from
 * the hashing pass to the packing pass spares an open and a close per file, but descriptors are a
 * per-process limit shared with everything else the process does (a scheduler's or an
 * orchestrator's sockets and logs): a backup takes at most half of what is left under the limit.
 * Node raises the soft limit to the hard one at start; Linux states it in /proc/self/limits.
 * Where that cannot be read, no file is kept open (each is opened again, as always works).
 */
import { readFileSync, readdirSync } from "node:fs";

/** Descriptors kept for the rest of the process whatever the limit. */
const RESERVED = 256;

/** The soft limit on open files, or undefined when not known. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync("/proc/self/limits", "latin1"));
    if (!m) return undefined;
    return m[1] === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** How many descriptors are open now (one readdir of /proc/self/fd), or undefined. */
function openNow(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return undefined;
  }
}

/** How many files a backup may keep open for its second pass (0: none). */
export function openFileBudget(): number {
  const limit = openFileLimit();
  const open = openNow();
  if (limit === undefined || open === undefined) return 0;
  return Math.max(0, Math.floor((limit - open - RESERVED) / 2));
}
