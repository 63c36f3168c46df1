/**
 * The bytes of one group of WAL lines, encoded into a buffer the writer keeps from group to
 * group: no string concatenation of the lines, no new buffer per group (a group of 64 lines
 * would otherwise flatten a 20 KB string and allocate 20 KB outside the buffer pool).
 */

/** A group larger than this gets a buffer of its own, so one huge entry does not pin its size. */
export const KEPT_CAPACITY = 1 << 20;

/** The most UTF-8 bytes one UTF-16 code unit becomes (a surrogate pair: 4 bytes for 2 units). */
const MAX_UTF8_PER_UNIT = 3;

export class LineBuffer {
  private buf: Buffer;
  private used = 0;

  constructor(private readonly initialCapacity = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(initialCapacity);
  }

  /** Appends `text` as UTF-8. */
  add(text: string): void {
    const worst = this.used + text.length * MAX_UTF8_PER_UNIT;
    if (worst > this.buf.length) this.grow(worst);
    this.used += this.buf.write(text, this.used);
  }

  /**
   * The bytes added since the last reset, as a view: valid until the next add() or reset(),
   * which reuse the memory.
   */
  bytes(): Buffer {
    return this.buf.subarray(0, this.used);
  }

  /** Empties the buffer for the next group (and drops a buffer grown past KEPT_CAPACITY). */
  reset(): void {
    this.used = 0;
    if (this.buf.length > KEPT_CAPACITY) this.buf = Buffer.allocUnsafe(this.initialCapacity);
  }

  /** Bytes it can hold before it grows. */
  get capacity(): number {
    return this.buf.length;
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(needed, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.used);
    this.buf = next;
  }
}
