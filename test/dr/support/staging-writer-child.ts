/**
 * A process whose only work is a StagingWriter's (whose worker is unref()'d between waits): it
 * queues FILES files (the last one, with `collide`, onto a folder that is already there, so the
 * worker fails on the very last batch), awaits finish(), and prints what it learnt and what the
 * folder holds at that moment. staging-writer-exit.test.ts checks that it neither ends before
 * the worker's last answer nor reports success before every file is written. With `nested` the
 * files are spread over four folders (staging-durable.test.ts); with `big` each is 1 MiB. It also
 * prints how many worker threads the process started. ARCHIVE_BYTES: the archive size the writer
 * is told (none by default).
 *   staging-writer-child.js ROOT FILES ok|collide|nested|big [ARCHIVE_BYTES]
 */
import { mkdirSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { StagingWriter } from "../../../src/dr/staging-writer.js";

const [root, files, mode, archiveBytes] = process.argv.slice(2);
const count = Number(files);
const file = (i: number): string => `f-${String(i).padStart(6, "0")}`;
const nameOf = (i: number): string =>
  mode === "nested" || mode === "big" ? `d-${i % 4}/${file(i)}` : file(i);
if (mode === "collide") mkdirSync(path.join(root!, nameOf(count - 1)), { recursive: true });
let workers = 0;
process.on("worker", () => workers++);
const threads = (): string => ` (${workers} worker thread${workers === 1 ? "" : "s"})`;
const writer = new StagingWriter(root!, archiveBytes ? { archiveBytes: Number(archiveBytes) } : {});
const body = (i: number): Buffer => Buffer.alloc((mode === "big" ? 1 << 20 : 1000) + (i % 7), i % 251);
try {
  for (let i = 0; i < count; i++) {
    const sink = await writer.file({ path: nameOf(i), mode: 0o644, size: body(i).length });
    await sink!.write(body(i));
    await sink!.end();
  }
  await writer.finish();
  let intact = 0;
  for (const name of readdirSync(root!, { recursive: true, encoding: "utf8" })) {
    const i = Number(path.basename(name).slice(2));
    if (name.includes("f-") && readFileSync(path.join(root!, name)).equals(body(i))) intact++;
  }
  process.stdout.write(`finished: ${intact} of ${count} files intact${threads()}\n`);
} catch (err) {
  await writer.close();
  process.stdout.write(
    `failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}${threads()}\n`,
  );
}
