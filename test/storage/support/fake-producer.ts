/**
 * Stands in for the DR archive producer in storage tests: writes given bytes to the target
 * (plus ".enc" when encrypting) and reports their SHA-256, like backupToFile does.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import type { ProducedBackup, Producer } from "../../../src/storage/offsite.js";

export function bytesProducer(bytes: Buffer, encrypted = false): Producer {
  return async (target: string): Promise<ProducedBackup> => {
    const file = encrypted ? `${target}.enc` : target;
    await writeFile(file, bytes);
    return {
      path: file,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      manifest_sha256: createHash("sha256").update("manifest").digest("hex"),
      file_count: 3,
      size_bytes: bytes.length,
      encrypted,
    };
  };
}
