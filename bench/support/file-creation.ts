/**
 * Whether creating files costs what it normally does on this file system. On ext4 without a
 * journal the inode allocator passes over inodes freed in the last 60 s (360 s while their
 * inode-table block is still dirty), looking each one up: after a large removal (a previous
 * bench's trees, a CI clone cleaned up) every new file costs hundreds of microseconds of system
 * time instead of tens. Restore rows and tar's alike would then measure the file system's
 * memory of that removal, not the restore, so the restore rows wait until creation is cheap
 * again, and the result says what the probe found.
 *
 * The probe is the rows' own work, `tar -xzf` of the archive they restore: a few hundred files in
 * one folder can land in block groups the removal did not touch and look cheap while an
 * extraction of thousands, spread over many folders, is not.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { measureProcess } from "./measure.js";

/**
 * System time per extracted file above which the file system counts as slow (normal here: 20–37
 * µs; slow: 200–500). Between the two, on the way into or out of the slow path, tar -xzf already
 * runs far slower than it normally does, and a restore's ratio to it would not be the restore's.
 */
export const SLOW_CREATE_US = 50;
const RETRY_EVERY_S = 30;

export interface FileCreationCheck {
  /** System µs per file of `tar -xzf` in the first probe and in the last one. */
  first_us_per_file: number;
  last_us_per_file: number;
  waited_s: number;
  /** Still slow when the wait ran out: the restore rows (and tar's) carry that cost. */
  slow: boolean;
}

/**
 * System µs per file of extracting `archive` (`files` files) with tar into a new folder `dir`.
 * The folder is left for the caller to remove with the rest: a removal now would feed the slow
 * path it measures.
 */
export function extractionSysUsPerFile(archive: string, files: number, dir: string): number {
  mkdirSync(dir);
  const cost = measureProcess(["tar", "-xzf", archive, "-C", dir]);
  return Math.round((cost.sys_s / files) * 1e7) / 10;
}

/**
 * Probes (extractions into new folders under `root`) until creating files is cheap or `maxWaitS`
 * has passed, a probe every RETRY_EVERY_S seconds; `log` hears why it waits.
 */
export async function awaitCheapFileCreation(
  probe: { archive: string; files: number; root: string },
  maxWaitS: number,
  log: (line: string) => void,
): Promise<FileCreationCheck> {
  const start = performance.now();
  let n = 0;
  const measure = (): number =>
    extractionSysUsPerFile(probe.archive, probe.files, path.join(probe.root, `creation-probe-${n++}`));
  const first = measure();
  let last = first;
  const waited = (): number => (performance.now() - start) / 1000;
  while (last > SLOW_CREATE_US && waited() + RETRY_EVERY_S <= maxWaitS) {
    log(
      `bench: tar -xzf spends ${last} µs of system time per file (normally 20–37; the file system's slow path after a large removal); ` +
        `probing again in ${RETRY_EVERY_S} s (${Math.round(waited())} of ${maxWaitS} s waited)`,
    );
    await sleep(RETRY_EVERY_S * 1000);
    last = measure();
  }
  return {
    first_us_per_file: first,
    last_us_per_file: last,
    waited_s: Math.round(waited()),
    slow: last > SLOW_CREATE_US,
  };
}
