/**
 * The file key of the generation an archiver writes to age recipients, kept on the archiving host
 * (`runtime/archive-key.json`, mode 0600): the archiver can wrap a key to recipients but, by
 * design, cannot unwrap one, so without this copy every restart would start a new generation and
 * a new base snapshot. The workspace it sits in holds the same history in clear, so the copy
 * grants nothing more on this host; backups leave it out (src/dr/walk.ts), so it never travels.
 * Only the key of the newest generation is kept.
 */
import { readFile } from "node:fs/promises";
import { atomicWriteFile } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";

export const ARCHIVE_KEY = ["runtime", "archive-key.json"] as const;

interface StoredKey {
  generation: string;
  file_key: string;
}

export async function saveGenerationKey(ws: Workspace, generation: string, key: Buffer): Promise<void> {
  const body: StoredKey = { generation, file_key: key.toString("base64") };
  await atomicWriteFile(ws.p(...ARCHIVE_KEY), JSON.stringify(body) + "\n", { mode: 0o600 });
}

/** The kept key of `generation`, or undefined (none kept, another generation's, unreadable). */
export async function loadGenerationKey(ws: Workspace, generation: string): Promise<Buffer | undefined> {
  try {
    const kept = JSON.parse(await readFile(ws.p(...ARCHIVE_KEY), "utf8")) as StoredKey;
    return kept.generation === generation ? Buffer.from(kept.file_key, "base64") : undefined;
  } catch {
    return undefined;
  }
}
