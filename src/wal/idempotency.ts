/**
 * The idempotency store, `runtime/wal/idempotency.jsonl`: one durable row per executed WAL intent,
 * keyed `<decision_type>:<entry_hash>` (the Python row format: a JSON object with `key`).
 *
 * Guarantees:
 *  - `markExecuted` returns only after the row is fsynced; a marker once written is never lost
 *    (the Python original rotated the file and forgot markers after two rotations);
 *  - lookups are O(1) (an in-memory Set of keys built by one streaming pass at open);
 *  - a torn last line (an interrupted append) is reported with its line number, the valid markers
 *    around it are kept, and the fragment stays in the file until compaction moves it aside;
 *  - compaction rewrites atomically (temp, fsync, rename, fsync folder), drops only duplicate rows,
 *    and checks that every marker is in the new file before it replaces the old one.
 */
import { open, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { canonicalJson, parseJson, PyFloat } from "../json/canonical.js";
import { asJsonObject } from "../json/object.js";
import {
  durableAppendLines,
  durableCreate,
  durableMkdir,
  durableRename,
  fsyncHandle,
  tempPathFor,
  writeAllAt,
  FILE_MODE,
} from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";

export interface IdempotencyProblem {
  line: number;
  message: string;
}

export interface MarkerInfo {
  decision_type: string;
  entry_hash: string;
  run_id?: string;
  seq?: number;
}

export function idempotencyKey(decisionType: string, entryHash: string): string {
  return `${decisionType}:${entryHash}`;
}

export function idempotencyFile(ws: Workspace): string {
  return path.join(ws.walDir, "idempotency.jsonl");
}

export class IdempotencyStore {
  private queue: Promise<unknown> = Promise.resolve();
  private folderMade = false;

  private constructor(
    readonly file: string,
    private readonly keys: Set<string>,
    /** Problems found when the store was opened (torn or damaged lines), with line numbers. */
    readonly problems: IdempotencyProblem[],
    private rowCount: number,
  ) {}

  /** Loads the store in one streaming pass. A missing file is an empty store. */
  static async open(ws: Workspace | string): Promise<IdempotencyStore> {
    const file = typeof ws === "string" ? ws : idempotencyFile(ws);
    const keys = new Set<string>();
    const problems: IdempotencyProblem[] = [];
    let rows = 0;
    try {
      for await (const line of readLinesForward(file)) {
        if (!line.text.trim()) continue;
        const key = keyOfLine(line.text);
        if (key === undefined) {
          problems.push({
            line: line.lineNo,
            message: line.terminated
              ? "not an idempotency row (kept in place)"
              : `torn last line: ${Buffer.byteLength(line.text)} bytes without a newline (an interrupted append); the markers before it are kept`,
          });
          continue;
        }
        rows++;
        keys.add(key);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new Error(`idempotency store: reading ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new IdempotencyStore(file, keys, problems, rows);
  }

  get size(): number {
    return this.keys.size;
  }

  has(decisionType: string, entryHash: string): boolean {
    return this.keys.has(idempotencyKey(decisionType, entryHash));
  }

  hasKey(key: string): boolean {
    return this.keys.has(key);
  }

  /** Durably records that an intent was executed. Resolves after fsync; a known key is a no-op. */
  markExecuted(marker: MarkerInfo): Promise<void> {
    const run = this.queue.then(() => this.markNow(marker));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async markNow(marker: MarkerInfo): Promise<void> {
    const key = idempotencyKey(marker.decision_type, marker.entry_hash);
    if (this.keys.has(key)) return;
    const row: Record<string, unknown> = {
      key,
      decision_type: marker.decision_type,
      entry_hash: marker.entry_hash,
      timestamp: new PyFloat(Date.now() / 1000),
    };
    if (marker.run_id !== undefined) row.run_id = marker.run_id;
    if (marker.seq !== undefined) row.seq = marker.seq;
    const text = canonicalJson(row) + "\n";
    if (!this.folderMade) {
      await durableMkdir(path.dirname(this.file));
      this.folderMade = true;
    }
    try {
      await durableAppendLines(this.file, text);
    } catch (err) {
      throw new Error(`idempotency store: appending to ${this.file}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.keys.add(key);
    this.rowCount++;
  }

  /**
   * Rewrites the file without duplicate rows, atomically. Lines that are not rows are not
   * dropped silently: they are moved to `idempotency.jsonl.rejected-<ms>` (fsynced) and returned.
   */
  compact(): Promise<{
    before_rows: number;
    after_rows: number;
    rejected_file?: string;
    rejected_lines: number;
  }> {
    const run = this.queue.then(() => this.compactNow());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async compactNow() {
    if (!(await stat(this.file).catch(() => undefined)))
      return { before_rows: 0, after_rows: 0, rejected_lines: 0 };
    const seen = new Set<string>();
    const rejected: string[] = [];
    const tmp = tempPathFor(this.file);
    const fh = await open(tmp, "wx", FILE_MODE);
    let before = 0;
    try {
      for await (const line of readLinesForward(this.file)) {
        if (!line.text.trim()) continue;
        const key = keyOfLine(line.text);
        if (key === undefined) {
          rejected.push(line.text);
          continue;
        }
        before++;
        if (seen.has(key)) continue;
        seen.add(key);
        await writeAllAt(fh, line.text + "\n", null);
      }
      for (const key of this.keys) {
        if (!seen.has(key)) throw new Error(`marker ${key} missing from the compacted file; not replacing`);
      }
      await fsyncHandle(fh);
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw new Error(`idempotency store: compacting ${this.file}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    await fh.close();
    let rejectedFile: string | undefined;
    if (rejected.length > 0) {
      rejectedFile = `${this.file}.rejected-${Date.now()}`;
      await durableCreate(rejectedFile, rejected.join("\n") + "\n");
    }
    await durableRename(tmp, this.file); // fsyncs the folder
    this.folderMade = true;
    this.rowCount = seen.size;
    return {
      before_rows: before,
      after_rows: seen.size,
      rejected_file: rejectedFile,
      rejected_lines: rejected.length,
    };
  }

  get rows(): number {
    return this.rowCount;
  }
}

function keyOfLine(text: string): string | undefined {
  try {
    const row = asJsonObject(parseJson(text));
    return row && typeof row.key === "string" && row.key.includes(":") ? row.key : undefined;
  } catch {
    return undefined;
  }
}
