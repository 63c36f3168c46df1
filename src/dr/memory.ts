/**
 * Keeps peak RSS flat while streaming gigabytes. Every chunk we read, decompress, encrypt or
 * decode is a fresh Buffer; V8 collects them only when external memory has grown by tens of
 * megabytes, so a 2 GB restore peaked near 150 MB although no more than a few MB are live at
 * any time. A `GarbageBudget` asks for a collection every `every` bytes processed (a full GC
 * of our small heap costs a few ms: ~85 for 2 GB). When the runtime refuses `--expose-gc`, it
 * does nothing.
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
  constructor(private readonly every = 24 * 1024 * 1024) {}
  /** Counts processed bytes; collects garbage once `every` bytes have gone through. */
  add(bytes: number): void {
    this.pending += bytes;
    if (this.pending >= this.every) {
      this.pending = 0;
      collector()?.();
    }
  }
}
