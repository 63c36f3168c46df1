/**
 * Worker thread of the parallel verifier: checks batches of complete WAL lines (parse, hash,
 * links inside the batch) and hands each batch back with its summary, or none when anything
 * is off (the coordinator then re-checks it line by line to name the break).
 */
import { parentPort } from "node:worker_threads";
import { checkBatch } from "./chain.js";

export interface BatchRequest {
  id: number;
  bytes: Uint8Array;
}

parentPort?.on("message", (msg: BatchRequest) => {
  const region = Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength);
  let summary;
  try {
    summary = checkBatch(region);
  } catch {
    summary = undefined;
  }
  parentPort!.postMessage({ id: msg.id, summary, bytes: msg.bytes }, [msg.bytes.buffer as ArrayBuffer]);
});
