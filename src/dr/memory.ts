/**
 * Keeps peak RSS flat while streaming gigabytes. Every chunk we read, decompress, encrypt or
 * decode is a fresh Buffer; V8 counts their bytes as external memory and, left alone, collects
 * them only when that has grown by tens of megabytes: a 2 GB restore peaked near 150 MB
 * although no more than a few MB are live at any time. A `GarbageBudget` looks at external
 * memory every `every` bytes processed and asks for a full collection when it is over `limit`.
 * With the small young generation bin/bernstein runs with, scavenges free most chunks already,
 * so that is rare: 14 collections for a 2 GB restore, 2 for the seed-sized one. (A
 * collection every 8 MB regardless cost ~15 ms each once a large manifest is on the heap.)
 * When the runtime refuses `--expose-gc`, it does nothing.
 */
import v8 from "node:v8";
import vm from "node:vm";

let gc: (() => void) | undefined | null = null;

function collector(): (() => void) | undefined {
  if (gc === null) {
    try {
      v8.setFlagsFromString("--expose-gc");
      gc = vm.runInNewContext("gc") as () => void;
    } catch {
      gc = undefined;
    }
  }
  return gc;
}

export class GarbageBudget {
  private pending = 0;
  constructor(
    private readonly every = 2 * 1024 * 1024,
    private readonly limit = 8 * 1024 * 1024,
  ) {}
  /** Counts processed bytes; now and then collects garbage if external memory piled up. */
  add(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.every) return;
    this.pending = 0;
    if (v8.getHeapStatistics().external_memory > this.limit) collector()?.();
  }
}
