/**
 * Whether creating files costs what it normally does on this file system. On ext4 without a
 * journal the inode allocator passes over inodes freed in the last 60 s (360 s while their
 * inode-table block is still dirty), looking each one up: after a large removal (a previous
 * bench's trees, a CI clone cleaned up) every new file costs hundreds of microseconds of system
 * time instead of tens. Restore rows and tar's alike would then measure the file system's
 * memory of that removal, not the restore, so the restore rows wait until creation is cheap
 * again, and the result says what the probe found.
 */
import { closeSync, mkdirSync, openSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Files each probe creates (kept until the caller removes its scratch folder: a removal now would feed the slow path). */
const PROBE_FILES = 400;
/** Per file, above this the file system counts as slow (normal here: 10–30 µs; slow: 100–500). */
export const SLOW_CREATE_US = 60;
const RETRY_EVERY_S = 30;

export interface FileCreationCheck {
  /** µs per file of the first probe and of the last one. */
  first_us_per_file: number;
  last_us_per_file: number;
  waited_s: number;
  /** Still slow when the wait ran out: the restore rows (and tar's) carry that cost. */
  slow: boolean;
}

/** µs to create (and close) one empty file, over PROBE_FILES files in a new folder `dir`. */
export function creationCostUs(dir: string): number {
  mkdirSync(dir);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PROBE_FILES; i++) closeSync(openSync(path.join(dir, `f${i}`), "wx"));
  return Number(process.hrtime.bigint() - t0) / 1000 / PROBE_FILES;
}

/**
 * Probes under `root` until creating a file is cheap or `maxWaitS` has passed, a probe every
 * RETRY_EVERY_S seconds; `log` hears why it waits.
 */
export async function awaitCheapFileCreation(
  root: string,
  maxWaitS: number,
  log: (line: string) => void,
): Promise<FileCreationCheck> {
  const start = performance.now();
  let probes = 0;
  const probe = (): number => creationCostUs(path.join(root, `creation-probe-${probes++}`));
  const first = probe();
  let last = first;
  const waited = (): number => (performance.now() - start) / 1000;
  while (last > SLOW_CREATE_US && waited() + RETRY_EVERY_S <= maxWaitS) {
    log(
      `bench: creating a file costs ${last.toFixed(0)} µs (normally tens; the file system's slow path after a large removal); ` +
        `probing again in ${RETRY_EVERY_S} s (${Math.round(waited())} of ${maxWaitS} s waited)`,
    );
    await sleep(RETRY_EVERY_S * 1000);
    last = probe();
  }
  return {
    first_us_per_file: Math.round(first * 10) / 10,
    last_us_per_file: Math.round(last * 10) / 10,
    waited_s: Math.round(waited()),
    slow: last > SLOW_CREATE_US,
  };
}
