/**
 * One measured upload, in its own process: `s3` streams FILE to the S3 store as a catalogue
 * backup (multipart, checksums, read-back); `local` puts it into a local folder store (the
 * baseline). Prints {seconds, cpu_seconds, bytes, peak_rss_bytes} as one JSON line.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { storeBackup } from "../../src/storage/catalogue.js";
import { openCatalogue } from "../../src/storage/open-store.js";

const [mode, file, location, sha256] = process.argv.slice(2);
const size = (await stat(file)).size;
const store = await openCatalogue(location);
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
if (mode === "s3" || mode === "local") {
  await storeBackup(
    store,
    "bernstein-backup-20260101T000000Z.tar.gz",
    file,
    { sha256, manifest_sha256: null, file_count: null, encrypted: false, created_at: new Date() },
    {},
  );
} else if (mode === "hash") {
  // Reading and hashing the file alone: the floor any upload pays.
  const h = createHash("sha256");
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  h.digest();
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
const cpu_seconds = (cpu.user + cpu.system) / 1e6;
process.stdout.write(
  JSON.stringify({
    mode,
    seconds,
    cpu_seconds,
    bytes: size,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  }) + "\n",
);
