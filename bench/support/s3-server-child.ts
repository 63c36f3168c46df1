/**
 * Runs the test S3 harness (s3rver + front proxy on 127.0.0.1, random ports) in its own
 * process so that a bench measures only the uploader's memory. Prints one JSON line with the
 * endpoint, then serves until SIGTERM or stdin closes.
 */
import { startS3Harness } from "../../test/storage/support/s3-harness.js";

const bucket = process.argv[2] ?? "bench";
const h = await startS3Harness({ buckets: [bucket] });
process.stdout.write(JSON.stringify({ endpoint: h.endpoint, dir: h.dir }) + "\n");
let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await h.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();
