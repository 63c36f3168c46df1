/**
 * A process that starts an archive's key ahead (keys-ahead.ts) and then either abandons the read
 * (as a restore refused before reading does) or reads up to the header, printing what the
 * decryptor got. keys-ahead.test.ts checks that it ends on its own, and what it printed.
 *   keys-ahead-child.js abandon|read ARCHIVE IDENTITY
 */
import { AgeDecryptor } from "../../../src/dr/age/decrypt.js";
import type { KeyCache } from "../../../src/dr/fernet.js";
import { startKeysAhead } from "../../../src/dr/keys-ahead.js";
import { openArchiveFile } from "../../../src/dr/restore.js";

const [mode, archive, identity] = process.argv.slice(2);
const cache: KeyCache = new Map();
const stream = await openArchiveFile(archive!);
await startKeysAhead(stream, { identities: [identity!] }, cache);
if (mode === "abandon") {
  stream.destroy();
} else {
  const decryptor = new AgeDecryptor([identity!], cache);
  try {
    for await (const chunk of stream) {
      await decryptor.update(chunk as Buffer);
      if (decryptor.header) break;
    }
    process.stdout.write("opened\n");
  } catch (err) {
    process.stdout.write(`${(err as Error).name}: ${(err as Error).message}\n`);
  }
}
