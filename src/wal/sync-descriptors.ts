/**
 * Descriptors of one file for fdatasyncs that run at the same time, one per running sync.
 *
 * Linux reports a writeback error once per open file description, to the first sync that asks.
 * Two syncs running together on one description could split an error between them: the sync of
 * the group whose bytes were lost returns 0 because the other took the error. With a description
 * per running sync, every sync that overlaps the failure reports it. Nothing is written through
 * them (read-only); they are reused from sync to sync, never shared by two running syncs.
 */
import { closeSync } from "node:fs";
import { openSyncDescriptor } from "../workspace/durable.js";

export class SyncDescriptors {
  private readonly free: number[] = [];
  private all: number[] = [];

  constructor(private readonly file: string) {}

  /** A descriptor no running sync uses (opened on first need). */
  take(): number {
    const fd = this.free.pop();
    if (fd !== undefined) return fd;
    const opened = openSyncDescriptor(this.file);
    this.all.push(opened);
    return opened;
  }

  /** Back to the pool once its sync has returned. */
  give(fd: number): void {
    if (this.all.includes(fd)) this.free.push(fd);
  }

  /** Closes them all; call only when no sync runs. */
  closeAll(): void {
    const all = this.all;
    this.all = [];
    this.free.length = 0;
    for (const fd of all) {
      try {
        closeSync(fd);
      } catch {
        // Nothing was written through it.
      }
    }
  }
}
