/**
 * Many small files read (a backlog of thousands of task files, an agent record per session).
 * Through the thread pool, each file is a few round trips (open, stat, read, close), and their
 * hand-offs between threads cost more CPU than the reads themselves; so the many are read with
 * blocking calls, in turns of a few milliseconds, the event loop running between turns (an
 * orchestrator's timers and its replication endpoint keep answering).
 */
import { readFile as readFileCallback } from "node:fs";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";

/** How long one turn of blocking reads may hold the event loop. */
const TURN_MS = 4;

/** A small file's whole text, read on its own (the callback readFile: no FileHandle, less CPU). */
export const readSmallFile: (file: string, encoding: "utf8") => Promise<string> = promisify(readFileCallback);

/**
 * `fn` (blocking reads and what is made of them) over `items`, results in the items' order; the
 * event loop turns every TURN_MS. A throw of `fn` is thrown from here and ends the work.
 */
export async function inTurns<T, R>(items: readonly T[], fn: (item: T) => R): Promise<R[]> {
  const results: R[] = [];
  let turnStart = performance.now();
  for (let i = 0; i < items.length; i++) {
    results.push(fn(items[i]!));
    if ((i & 15) === 15 && performance.now() - turnStart >= TURN_MS) {
      await new Promise((r) => setImmediate(r));
      turnStart = performance.now();
    }
  }
  return results;
}
