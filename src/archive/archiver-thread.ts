/**
 * The archiver of `start --archive-to` on a thread of its own (worker_threads), so that reading,
 * checking, hashing and uploading the durable bytes never runs on the WAL writer's event loop.
 * The thread runs the same Archiver as `dr archive` (archiver-worker.ts); this side only forwards
 * calls and answers as messages: the first step, the loop's start, stop and finish, and `--sync`'s
 * commit gate (a position in, "stored" out). The thread reads the durable bytes from the files as
 * `dr archive` beside a writer does, so nothing of the writer is shared.
 *
 * A thread that dies (an uncaught error, out of memory) is reported once through `onFatal`, as an
 * Archiver loop's fatal error is; every commit gate waiting then, and every later one, fails with
 * ArchiverStopped: with `--sync` no decision is acted on without the store holding it.
 */
import { Worker } from "node:worker_threads";
import { UserError, type ExitCodeValue } from "../errors/errors.js";
import type { WalPosition } from "../wal/entry.js";
import type { ArchiveStatus } from "./archive-status.js";
import { ArchiverStopped, type ArchiverEvent, type ArchiverOptions } from "./archiver.js";
import type { S3Options } from "../storage/s3-store.js";
import type { CycleResult } from "./shipper.js";

/** What the thread builds its Archiver from: ArchiverOptions that cross a thread (no objects). */
export interface ArchiverThreadSpec extends Omit<ArchiverOptions, "store" | "ws" | "log"> {
  /** The workspace's `.sdd/` folder. */
  sddDir: string;
  /** The archive's location (a folder or s3://bucket/prefix/), opened in the thread. */
  to: string;
  s3: S3Options;
}

/** A call to the thread and its answer (archiver-worker.ts). */
type ThreadRequest =
  { op: "started" | "stopped" | "status" | "step" | "finish" } | { op: "gate"; pos: WalPosition };
export type ThreadCall = ThreadRequest & { id: number };
export type ThreadMessage =
  | { id: number; ok: true; value?: unknown }
  | { id: number; ok: false; message: string; stopped: boolean; exitCode?: number }
  | { event: ArchiverEvent }
  | { fatal: string; exitCode?: number };

/** An error of the thread as this side throws it: a user's error keeps its exit code. */
const errorOf = (message: string, exitCode?: number): Error =>
  exitCode !== undefined ? new UserError(message, exitCode as ExitCodeValue) : new Error(message);

export class ArchiverThread {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Why the thread is gone (set once it ended). */
  private gone?: string;
  private fatalSeen = false;
  private onFatal?: (err: unknown) => void;
  private readonly ended: Promise<void>;

  constructor(spec: ArchiverThreadSpec, log?: (e: ArchiverEvent) => void) {
    this.worker = new Worker(new URL("./archiver-worker.js", import.meta.url), { workerData: spec });
    this.worker.on("message", (m: ThreadMessage) => {
      if ("event" in m) log?.(m.event);
      else if ("fatal" in m) this.fatal(errorOf(m.fatal, m.exitCode));
      else {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.ok) p?.resolve(m.value);
        else p?.reject(m.stopped ? new ArchiverStopped(m.message) : errorOf(m.message, m.exitCode));
      }
    });
    this.worker.on("error", (err) => this.end(`archiver thread failed: ${err.message}`, err));
    this.ended = new Promise((resolve) =>
      this.worker.once("exit", (code) => {
        this.end(`archiver thread exited (${code})`);
        resolve();
      }),
    );
  }

  /** The thread is gone: every call waiting fails; an unexpected end is fatal. */
  private end(why: string, err?: Error): void {
    const expected = this.gone !== undefined;
    this.gone ??= why;
    for (const p of this.pending.values()) p.reject(new ArchiverStopped(`archive stopped: ${why}`));
    this.pending.clear();
    if (!expected) this.fatal(err ?? new Error(why));
  }

  private fatal(err: Error): void {
    if (this.fatalSeen) return;
    this.fatalSeen = true;
    this.onFatal?.(err);
  }

  private call<T>(c: ThreadRequest): Promise<T> {
    if (this.gone !== undefined) return Promise.reject(new ArchiverStopped(`archive stopped: ${this.gone}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...c, id });
    });
  }

  /** Announces the archiver in its status file (as ArchiveHealth.started). */
  started(): Promise<void> {
    return this.call({ op: "started" });
  }

  /** Records the stop in the status file (as ArchiveHealth.stopped). */
  stopped(): Promise<void> {
    return this.call({ op: "stopped" });
  }

  /** The health as the thread holds it. */
  status(): Promise<ArchiveStatus> {
    return this.call({ op: "status" });
  }

  /** Archiver.step: one round (generation, snapshot when due, a cycle); undefined when the store failed. */
  step(): Promise<CycleResult | undefined> {
    return this.call({ op: "step" });
  }

  /** Starts the loop; a fatal error of the loop or the thread's death goes to `onFatal`, once. */
  start(onFatal: (err: unknown) => void): void {
    this.onFatal = onFatal;
    this.worker.postMessage({ op: "start" });
  }

  /** Archiver.shippedThrough, `--sync`'s commit gate. */
  shippedThrough(pos: WalPosition): Promise<void> {
    return this.call({ op: "gate", pos });
  }

  /** Stops the loop without a last cycle (the run failed), then ends the thread. */
  async stop(): Promise<void> {
    if (this.gone !== undefined) return;
    this.worker.postMessage({ op: "stop" });
    await this.close();
  }

  /** Archiver.finish (stop, a last cycle, the status says stopped), then ends the thread. */
  async finish(): Promise<CycleResult | undefined> {
    try {
      return await this.call<CycleResult | undefined>({ op: "finish" });
    } finally {
      await this.close();
    }
  }

  /** Ends the thread once it has nothing in flight (the loop stopped, the answers sent). */
  private async close(): Promise<void> {
    this.gone ??= "archiver thread closed";
    this.worker.postMessage({ op: "close" });
    await this.ended;
  }
}
