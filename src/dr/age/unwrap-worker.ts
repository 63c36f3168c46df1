/**
 * A worker thread that loads the age library and unwraps one file key (keys.ts
 * startFileKeyUnwrap), so that the library's start-up and its first, unoptimized run of the
 * post-quantum decapsulation use the second core while the main thread gets the read ready.
 * Posts the key, or the failure as keys.ts reports it (UnwrapFailure), then ends.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AgeFormatError } from "./header.js";
import { AgeIdentityError, unwrapFileKey, type UnwrapReply } from "./keys.js";

const { header, identities } = workerData as { header: Uint8Array; identities: string[] };
let reply: UnwrapReply;
try {
  reply = { key: await unwrapFileKey(Buffer.from(header), identities) };
} catch (err) {
  if (err instanceof AgeIdentityError)
    reply = { failed: { kind: "identity", tried: err.tried, stanzas: err.stanzas } };
  else if (err instanceof AgeFormatError) reply = { failed: { kind: "format", message: err.message } };
  else reply = { failed: { kind: "other", message: String(err) } };
}
parentPort!.postMessage(reply);
