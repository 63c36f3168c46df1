/**
 * Handing out what a file's lines produce one item at a time, as an async iterator whose `next()`
 * answers at once from the region in hand and reads only when the region is used up.
 *
 * Not an async generator: each `yield` of one awaits the item and settles the caller's promise in
 * a second turn, which on a WAL of small entries cost about as much as building them.
 */
import type { FileHandle } from "node:fs/promises";
import { emitLine, readRegions, type LineRegion, type LineSink } from "./line-scan.js";

/** A sink that turns some lines into items a reader hands out one at a time. */
export interface PullSink<T> extends LineSink {
  /** What the last line produced, taken (and cleared) by pullLines. */
  ready: T | undefined;
  /** Set when nothing more is to be read. */
  stopped: boolean;
  /** Called once the file is read and closed (not when the consumer stops early); may throw. */
  end(): void;
}

/**
 * Opens a file with `openFile` and feeds it, from offset `from` (a line start), to `sink` a line
 * at a time, handing out each item a line produces as soon as it does: only the item in hand is
 * alive, whatever the region holds. Line numbers start after `lineNo`. The file is closed when
 * the items run out, when reading fails and when the consumer stops early (`return`).
 */
export function pullLines<T>(
  openFile: () => Promise<FileHandle>,
  sink: PullSink<T>,
  from = 0,
  lineNo = 0,
): AsyncIterableIterator<T> {
  return new LinePuller(openFile, sink, from, lineNo);
}

const EMPTY = Buffer.alloc(0);
const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

class LinePuller<T> implements AsyncIterableIterator<T> {
  private fh: FileHandle | undefined;
  private regions: AsyncGenerator<LineRegion, number> | undefined;
  private bytes: Buffer = EMPTY;
  private start = 0;
  private tail = false;
  private finished = false;
  /** The read under way, which a next() called before it settles waits for. */
  private reading: Promise<IteratorResult<T>> | undefined;

  constructor(
    private readonly openFile: () => Promise<FileHandle>,
    private readonly sink: PullSink<T>,
    private readonly from: number,
    private lineNo: number,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.reading) return this.reading.then(() => this.next());
    const item = this.fromRegion();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.finished) return Promise.resolve(DONE);
    const reading = this.read().finally(() => (this.reading = undefined));
    this.reading = reading;
    return reading;
  }

  async return(): Promise<IteratorResult<T>> {
    if (this.reading) await this.reading.catch(() => undefined);
    if (!this.finished) await this.finish();
    return DONE;
  }

  /** The next item of the region in hand, or undefined when the region is used up. */
  private fromRegion(): T | undefined {
    const sink = this.sink;
    const bytes = this.bytes;
    while (this.start < bytes.length && !sink.stopped) {
      this.start = emitLine(bytes, this.start, ++this.lineNo, this.tail, sink, sink.take);
      const item = sink.ready;
      if (item !== undefined) {
        sink.ready = undefined;
        return item;
      }
    }
    return undefined;
  }

  /** Reads regions until one produces an item; at the end closes the file and ends the sink. */
  private async read(): Promise<IteratorResult<T>> {
    try {
      if (!this.fh) {
        this.fh = await this.openFile();
        this.regions = readRegions(this.fh, this.from);
      }
      while (!this.sink.stopped) {
        const step = await this.regions!.next();
        if (step.done) break;
        this.bytes = step.value.bytes;
        this.tail = step.value.tail;
        this.start = 0;
        const item = this.fromRegion();
        if (item !== undefined) return { value: item, done: false };
      }
    } catch (err) {
      await this.finish();
      throw err;
    }
    await this.finish();
    this.sink.end();
    return DONE;
  }

  /** Nothing more is handed out: the region is dropped and the file closed. */
  private async finish(): Promise<void> {
    this.finished = true;
    this.bytes = EMPTY;
    const fh = this.fh;
    this.fh = undefined;
    this.regions = undefined;
    await fh?.close();
  }
}
