/** What rekey tests read back of an `.age` archive: its bytes, its payload, their sha256. */
import { createHash } from "node:crypto";
import { openObject } from "../../../src/storage/open-store.js";

/** The whole object or file at a location. */
export async function bytesOf(location: string): Promise<Buffer> {
  const { store, key } = await openObject(location);
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The bytes after the age header (its MAC line, "--- ..."). */
export const payloadOf = (b: Buffer): Buffer => b.subarray(b.indexOf(0x0a, b.indexOf("\n--- ") + 1) + 1);

export const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
