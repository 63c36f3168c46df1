/**
 * The setup of the archive suites that run against the S3-compatible server: the server with one
 * bucket, a scratch folder holding an archive fixture, and the server's settings in process.env
 * (the tests read the store themselves) until close().
 */
import { scratchDir } from "../../helpers.js";
import { startS3Harness, type S3Harness } from "../../storage/support/s3-harness.js";
import { archiveFixture, type ArchiveFixture } from "./archive-workspace.js";

export interface S3ArchiveSetup {
  h: S3Harness;
  /** The scratch folder: the fixture's workspace and anything a test restores. */
  dir: string;
  f: ArchiveFixture;
  close(): Promise<void>;
}

export async function openS3Archive(bucket: string, scratchPrefix: string): Promise<S3ArchiveSetup> {
  const h = await startS3Harness({ buckets: [bucket] });
  const scratch = await scratchDir(scratchPrefix);
  const f = await archiveFixture(scratch.dir, h.env);
  const saved = { ...process.env };
  Object.assign(process.env, h.env);
  return {
    h,
    dir: scratch.dir,
    f,
    close: async () => {
      process.env = saved;
      await h.close();
      await scratch.cleanup();
    },
  };
}
