/**
 * The file-system half of an extraction, on its own thread (see staging-writer.ts). It receives
 * batches of operations with their bytes and runs them in order with blocking calls, so that
 * creating thousands of files overlaps decryption, decompression, parsing and hashing on the
 * main thread instead of adding to them. (Hashing the files here too was slower: the thread
 * creating the files is then the one the other waits for.) After the first failure it does
 * nothing more and reports that failure for every later batch.
 */
import { closeSync, constants, fchmodSync, futimesSync, mkdirSync, openSync, writeSync } from "node:fs";
import { isUtf8 } from "node:buffer";
import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";

/**
 * A batch is a slot of two shared buffers, so that handing it over copies and allocates
 * nothing: `data` holds file bytes and names as their bytes (raw-name.ts), `ops` the operations as OP_WORDS numbers
 * each:
 *   MKDIR, name offset, name length, 0
 *   OPEN,  name offset, name length, mode | REPLACE
 *          (create with mode; REPLACE: truncate an existing file instead of failing)
 *   WRITE, data offset, length, 0
 *   CLOSE, mode to set or -1, mtime in seconds or NaN, 0
 */
export const OP_WORDS = 4;
export const MKDIR = 1;
export const OPEN = 2;
export const WRITE = 3;
export const CLOSE = 4;
export const REPLACE = 0o1000000;

export interface StagingSlot {
  data: SharedArrayBuffer;
  ops: SharedArrayBuffer;
}

/** "Run the first `count` numbers of slot `slot`" (with its buffers the first time it is used). */
export interface StagingBatch {
  slot: number;
  count: number;
  buffers?: StagingSlot;
}

export interface StagingFailure {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

/** "Slot `slot` is free again"; after a failure, every reply carries it. */
export type StagingReply = { slot: number; failed?: StagingFailure };

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
const TRUNCATE = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;

/**
 * Runs batches in order with blocking calls: on the worker, or on the main thread for an
 * extraction small enough to be one batch. A file may stay open from one batch to the next.
 */
export class StagingApplier {
  private fd = -1;

  private readonly rootBytes: Buffer;

  constructor(private readonly root: string) {
    this.rootBytes = Buffer.from(path.join(root, "/"));
  }

  /** Runs the first `count` numbers of `ops`; on a failure, closes the file it left open and throws. */
  apply(data: Buffer, ops: Float64Array, count: number): void {
    const name = (i: number): string | Buffer => {
      const bytes = data.subarray(ops[i + 1], ops[i + 1]! + ops[i + 2]!);
      // A name that is not UTF-8 goes to the file system as its bytes: a string would be encoded.
      if (isUtf8(bytes)) return path.join(this.root, bytes.toString("utf8"));
      return Buffer.concat([this.rootBytes, bytes]);
    };
    try {
      for (let i = 0; i < count; i += OP_WORDS) {
        switch (ops[i]) {
          case MKDIR:
            mkdirSync(name(i), { mode: 0o700 });
            break;
          case OPEN: {
            const mode = ops[i + 3]!;
            this.fd = openSync(name(i), mode & REPLACE ? TRUNCATE : CREATE, mode & 0o7777);
            break;
          }
          case WRITE: {
            const end = ops[i + 1]! + ops[i + 2]!;
            for (let off = ops[i + 1]!; off < end;) off += writeSync(this.fd, data, off, end - off);
            break;
          }
          case CLOSE: {
            const f = this.fd;
            this.fd = -1;
            try {
              if (ops[i + 1]! >= 0) fchmodSync(f, ops[i + 1]!);
              if (!Number.isNaN(ops[i + 2])) futimesSync(f, ops[i + 2]!, ops[i + 2]!);
            } finally {
              closeSync(f);
            }
            break;
          }
        }
      }
    } catch (err) {
      if (this.fd >= 0) {
        try {
          closeSync(this.fd);
        } catch {
          // the first failure is the one worth reporting
        }
        this.fd = -1;
      }
      throw err;
    }
  }
}

function run(root: string): void {
  const port = parentPort!;
  const applier = new StagingApplier(root);
  let failure: StagingFailure | undefined;
  const slots: { data: Buffer; ops: Float64Array }[] = [];
  port.on("message", (batch: StagingBatch) => {
    if (batch.buffers)
      slots[batch.slot] = { data: Buffer.from(batch.buffers.data), ops: new Float64Array(batch.buffers.ops) };
    if (!failure) {
      const { data, ops } = slots[batch.slot]!;
      try {
        applier.apply(data, ops, batch.count);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failure = { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path };
      }
    }
    const reply: StagingReply = failure ? { slot: batch.slot, failed: failure } : { slot: batch.slot };
    port.postMessage(reply);
  });
}

if (parentPort) run((workerData as { root: string }).root);
