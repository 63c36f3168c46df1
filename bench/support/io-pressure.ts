/**
 * Write pressure from another process, as on a busy machine where a restore runs beside other
 * work: `io-pressure.js DIR MB [fsync]` rewrites a MB-megabyte file in DIR in 1 MiB blocks, one
 * pass a second (back to back when a pass takes longer), until SIGTERM, which removes the file.
 * Without `fsync` each pass only dirties the page cache: MB of it stay dirty until the kernel's
 * flusher, or somebody's sync or syncfs, writes them out. With `fsync` each pass ends with an
 * fsync, so the disk writes MB every second. Prints "pass T" after each pass, T the Date.now() at
 * which it started: a caller that resumes it with SIGCONT waits for a pass started after that.
 */
import { closeSync, openSync, fsyncSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";

const [dir, mbArg, mode] = process.argv.slice(2);
const MB = Number(mbArg);
if (!dir || !(MB > 0)) throw new Error("usage: io-pressure.js DIR MB [fsync]");
const file = path.join(dir, `io-pressure-${process.pid}.bin`);
const fd = openSync(file, "w");
const stop = (): void => {
  closeSync(fd);
  rmSync(file, { force: true });
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const block = randomBytes(1024 * 1024);
const pass = (): void => {
  const started = Date.now();
  for (let i = 0; i < MB; i++) writeSync(fd, block, 0, block.length, i * block.length);
  if (mode === "fsync") fsyncSync(fd);
  process.stdout.write(`pass ${started}\n`);
  setTimeout(pass, Math.max(0, 1000 - (Date.now() - started)));
};
pass();
