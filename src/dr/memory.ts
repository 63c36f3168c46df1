/**
 * Keeps peak RSS flat while streaming gigabytes. Every chunk we read, decompress, encrypt or
 * decode is a fresh Buffer; V8 counts their bytes as external memory and, left alone, collects
 * them only after that has grown by tens of megabytes, although only a few MB are live at any
 * time. A `GarbageBudget` looks at external memory every `every` bytes processed and asks for a
 * full collection only when it is over `limit` (a collection at a fixed interval instead would
 * cost a full heap walk each time once a large manifest is on the heap). When the runtime
 * refuses `--expose-gc`, it does nothing.
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
