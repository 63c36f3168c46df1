/**
 * The file-system half of an extraction, on its own thread (see staging-writer.ts). It receives
 * batches of operations with their file bytes and runs them in order with blocking calls, so
 * that creating thousands of files overlaps with decryption, decompression and hashing on the
 * main thread instead of adding to them. After the first failure it does nothing more and
 * reports that failure for every later batch.
 */
import { closeSync, fchmodSync, futimesSync, mkdirSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";

/** One operation; `write` refers to bytes of the batch's data buffer. */
export type StagingOp =
  ["mkdir", string] | ["open", string] | ["write", number, number] | ["close", number, number | null];

export interface StagingBatch {
  id: number;
  ops: StagingOp[];
  data: ArrayBuffer;
}

export interface StagingFailure {
  message: string;
  code?: string;
  syscall?: string;
  path?: string;
}

/** Every batch comes back with its buffer, for reuse: the worker's tiny heap would otherwise
 * free transferred buffers only at its rare collections, tens of megabytes later. */
export type StagingReply = { data: ArrayBuffer } & ({ done: number } | { failed: StagingFailure });

function run(root: string): void {
  const port = parentPort!;
  let fd: number | undefined;
  let failure: StagingFailure | undefined;
  port.on("message", (batch: StagingBatch) => {
    if (!failure) {
      try {
        const data = Buffer.from(batch.data);
        for (const op of batch.ops) {
          switch (op[0]) {
            case "mkdir":
              mkdirSync(path.join(root, op[1]), { mode: 0o700 });
              break;
            case "open":
              fd = openSync(path.join(root, op[1]), "wx", 0o600);
              break;
            case "write": {
              const end = op[1] + op[2];
              for (let off = op[1]; off < end;) off += writeSync(fd!, data, off, end - off);
              break;
            }
            case "close": {
              fchmodSync(fd!, op[1]);
              if (op[2] !== null) futimesSync(fd!, op[2], op[2]);
              const f = fd!;
              fd = undefined;
              closeSync(f);
              break;
            }
          }
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failure = { message: e.message, code: e.code, syscall: e.syscall, path: e.path };
        if (fd !== undefined) {
          try {
            closeSync(fd);
          } catch {
            // the first failure is the one worth reporting
          }
        }
        fd = undefined;
      }
    }
    const reply: StagingReply = failure
      ? { failed: failure, data: batch.data }
      : { done: batch.id, data: batch.data };
    port.postMessage(reply, [batch.data]);
  });
}

if (parentPort) run((workerData as { root: string }).root);
