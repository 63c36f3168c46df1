/**
 * Many small files read (a backlog of thousands of task files, an agent record per session). One
 * at a time, each read is a few thread-pool round trips and the process waits idle through most
 * of them; all at once would open thousands of descriptors. And the promise API's readFile and
 * stat cost more CPU per small file than the callback forms (a FileHandle, a round trip per step).
 */
import { readFile as readFileCallback, stat as statCallback } from "node:fs";
import { promisify } from "node:util";

/** Small-file reads at once: a few per thread of the pool (four by default), so none waits idle. */
export const FILE_READS_IN_FLIGHT = 16;

/** A small file's whole text (the callback readFile: open, fstat, read and close in one request). */
export const readSmallFile: (file: string, encoding: "utf8") => Promise<string> = promisify(readFileCallback);

/** stat through the callback form. */
export const statPath = promisify(statCallback);

/**
 * `fn` over `items` with at most `limit` calls pending, results in the items' order. The first
 * rejection is thrown once the calls already started have settled; no call starts after it.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let failure: unknown;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        if (!failed) failure = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  if (failed) throw failure;
  return results;
}
