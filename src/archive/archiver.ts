/**
 * The long-running archiver: opens (or starts) a generation, takes its base snapshot, then ships
 * a cycle every `intervalMs` and a new snapshot every `snapshotIntervalMs`. A store failure is
 * not fatal: the local files keep everything, the lag grows and is reported, and the next cycle
 * sends the same bytes again. A workspace restored or rolled back underneath starts a new
 * generation. Health goes to `runtime/archive-status.json` after every cycle.
 */
import type { BackupStore } from "../storage/store.js";
import type { Workspace } from "../workspace/layout.js";
import { takeBaseSnapshot } from "./base-snapshot.js";
import { openGeneration, type GenerationState } from "./generation.js";
import { ArchiveHealth } from "./health.js";
import { sealSegment, type SegmentKey, type WriteKeys } from "./sealing.js";
import { ContinuityLost, shipCycle, type CycleResult, type Sealer } from "./shipper.js";

const sealerOf =
  (key: SegmentKey): Sealer =>
  (plain) =>
    sealSegment(key, plain);

export interface ArchiverOptions {
  store: BackupStore;
  ws: Workspace;
  intervalMs: number;
  snapshotIntervalMs: number;
  /** Encrypt with this password (Fernet; PBKDF2 once per generation)... */
  password?: string;
  /** ...or to these age recipients (they win over a password, as in `dr backup`). */
  recipients?: readonly string[];
  /** The user chose a plain archive explicitly: an encrypted generation may be followed by a plain one. */
  plainChosen?: boolean;
  /** PBKDF2 iterations of a new password generation (default: the backups' 600,000). */
  kdfIterations?: number;
  auditKeyPath?: string;
  /** One line per notable event (generation started, snapshot, store error, caught up). */
  log?: (event: ArchiverEvent) => void;
}

export type ArchiverEvent =
  | { event: "generation"; generation: string; resumed: boolean; cause?: string }
  | { event: "snapshot"; generation: string; number: number; key: string }
  | { event: "cycle"; segments: number; bytes: number }
  | { event: "error"; error: string }
  | { event: "recovered"; after_errors: number };

export class Archiver {
  private gen?: GenerationState;
  private lastSnapshotAt = 0;
  private stopping = false;
  private wake?: () => void;
  readonly health: ArchiveHealth;

  constructor(private readonly opts: ArchiverOptions) {
    this.health = new ArchiveHealth(opts.ws, opts.store.root);
  }

  get generation(): string | undefined {
    return this.gen?.generation;
  }

  /** Asks the loop to stop after the cycle in flight (its upload finishes first). */
  stop(): void {
    this.stopping = true;
    this.wake?.();
  }

  /** Runs until stop(); resolves once the cycle in flight is done. */
  async run(): Promise<void> {
    while (!this.stopping) {
      await this.step();
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.opts.intervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** One round: generation and snapshot when due, then a shipping cycle. Never throws for the store. */
  async step(): Promise<CycleResult | undefined> {
    try {
      const gen = await this.ensureGeneration();
      const due = Date.now() - this.lastSnapshotAt >= this.opts.snapshotIntervalMs;
      if (!gen.snapshot || due) await this.snapshot(gen);
      const result = await shipCycle({
        store: this.opts.store,
        ws: this.opts.ws,
        generation: gen.generation,
        ends: gen.ends,
        seal: gen.key ? sealerOf(gen.key) : undefined,
      });
      if (this.health.errorsInARow > 0)
        this.opts.log?.({ event: "recovered", after_errors: this.health.errorsInARow });
      if (result.segments > 0)
        this.opts.log?.({ event: "cycle", segments: result.segments, bytes: result.bytes });
      await this.health.cycleDone(gen.generation, result);
      return result;
    } catch (err) {
      if (err instanceof ContinuityLost) {
        this.gen = undefined; // the next step opens a new generation, naming the cause
        this.nextCause = err.message;
      } else if (isFatal(err)) {
        throw err;
      }
      const message = err instanceof Error ? err.message : String(err);
      this.opts.log?.({ event: "error", error: message });
      await this.health.cycleFailed(message).catch(() => {});
      return undefined;
    }
  }

  private nextCause?: string;

  private async ensureGeneration(): Promise<GenerationState> {
    if (this.gen) return this.gen;
    const gen = await openGeneration(this.opts.store, this.opts.ws, {
      keys: this.keys,
      plainChosen: this.opts.plainChosen,
      iterations: this.opts.kdfIterations,
      forceCause: this.nextCause,
    });
    this.nextCause = undefined;
    this.gen = gen;
    this.lastSnapshotAt = gen.snapshot ? gen.snapshot.completed_at : 0;
    this.opts.log?.({
      event: "generation",
      generation: gen.generation,
      resumed: gen.resumed,
      ...(gen.resumed ? {} : { cause: gen.record.cause }),
    });
    return gen;
  }

  /** Recipients win over a password, as in `dr backup`. */
  private get keys(): WriteKeys {
    if (this.opts.recipients?.length) return { recipients: this.opts.recipients };
    return this.opts.password !== undefined ? { password: this.opts.password } : {};
  }

  private async snapshot(gen: GenerationState): Promise<void> {
    const number = gen.snapshot ? gen.snapshot.number + 1 : 0;
    const index = await takeBaseSnapshot({
      store: this.opts.store,
      ws: this.opts.ws,
      generation: gen.generation,
      number,
      backup: { ...this.keys, auditKeyPath: this.opts.auditKeyPath },
    });
    if (!gen.snapshot) for (const [stream, end] of Object.entries(index.streams)) gen.ends.set(stream, end);
    gen.snapshot = index;
    this.lastSnapshotAt = index.completed_at;
    this.opts.log?.({ event: "snapshot", generation: gen.generation, number, key: index.key });
  }
}

/** Errors that are the user's to fix, not the store's to recover from (a bad password, a bad workspace). */
function isFatal(err: unknown): boolean {
  const code = (err as { exitCode?: number }).exitCode;
  return code === 2 || code === 4;
}
