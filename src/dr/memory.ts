/**
 * Keeps peak RSS flat while streaming gigabytes. Every chunk we read, decompress, encrypt or
 * decode is a fresh Buffer; V8 counts their bytes as external memory and, left alone, collects
 * them only after that has grown by tens of megabytes, although only a few MB are live at any
 * time. A `GarbageBudget` looks at external memory every `every` bytes processed (read and
 * inflated alike) and asks for a collection only when it is over `limit`: a scavenge first, a
 * full collection only when that did not bring it back under (a collection at a fixed interval
 * instead would cost a full heap walk each time once a large manifest is on the heap). When the
 * runtime refuses `--expose-gc`, it does nothing.
 */
import v8 from "node:v8";
import vm from "node:vm";

type Collect = (options?: { type: "minor" }) => void;
let gc: Collect | undefined | null = null;

function collector(): Collect | undefined {
  if (gc === null) {
    try {
      v8.setFlagsFromString("--expose-gc");
      gc = vm.runInNewContext("gc") as Collect;
    } catch {
      gc = undefined;
    }
  }
  return gc;
}

export class GarbageBudget {
  private pending = 0;
  private scavenged = false;
  constructor(
    private readonly every = 2 * 1024 * 1024,
    private readonly limit = 8 * 1024 * 1024,
  ) {}
  /** Counts processed bytes; now and then collects garbage if external memory piled up. */
  add(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.every) return;
    this.pending = 0;
    if (v8.getHeapStatistics().external_memory <= this.limit) {
      this.scavenged = false;
      return;
    }
    // Most of the garbage is chunks that died young: a scavenge frees them for a fraction of a
    // full collection's cost. Still over the limit at the next look, the rest is chunks promoted
    // while in use, which only a full collection frees.
    const collect = collector();
    // A full collection is the bare call: asked for as `{ type: "major" }`, V8 collects without
    // shrinking the heap as much, and a restore's peak RSS stays higher.
    if (this.scavenged) collect?.();
    else collect?.({ type: "minor" });
    this.scavenged = !this.scavenged;
  }
}
