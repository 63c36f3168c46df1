/**
 * The follower's base snapshot refresh: every interval, the leader's snapshot is fetched beside
 * the pull loop (a big or slow one must not stall the WAL), checked and stored, and recorded in
 * the role as the base a promotion materializes from.
 */
import type { IncomingMessage } from "node:http";
import type { Workspace } from "../workspace/layout.js";
import { type Peer, errorText, readAll } from "./client.js";
import type { RoleState } from "../workspace/replication-role.js";

export type StoreSnapshot = (
  stream: IncomingMessage,
  ws: Workspace,
) => Promise<{ file: string; wal_positions: Record<string, number> }>;

export class SnapshotRefresher {
  private lastAt = 0;
  private running: Promise<void> | null = null;
  private abort: (() => void) | null = null;

  constructor(
    private readonly c: {
      ws: Workspace;
      store?: StoreSnapshot;
      everyMs: number;
      peer: () => Peer;
      isStopped: () => boolean;
      log: (line: string) => void;
      recordBase: (base: NonNullable<RoleState["base_snapshot"]>) => Promise<void>;
    },
  ) {}

  /** A snapshot was just fetched (the bootstrap's): the next refresh is an interval from now. */
  fetchedNow(): void {
    this.lastAt = Date.now();
  }

  /** Starts a refresh when one is due and none runs. */
  maybeStart(): void {
    const store = this.c.store;
    if (!store || this.c.everyMs <= 0 || this.running) return;
    if (Date.now() - this.lastAt < this.c.everyMs) return;
    this.lastAt = Date.now();
    this.running = this.refresh(store).finally(() => {
      this.running = null;
      this.abort = null;
      // The next refresh is `every` after this one ended, not after it began.
      this.lastAt = Date.now();
    });
  }

  /** Cuts the transfer in flight short. */
  stop(): void {
    this.abort?.();
  }

  /** Resolves once the refresh running now (if any) has ended. */
  async settled(): Promise<void> {
    await this.running;
  }

  private async refresh(store: StoreSnapshot): Promise<void> {
    try {
      const { res } = await this.c.peer().open("GET", "/snapshot", {
        timeoutMs: 600_000,
        onAbortable: (abort) => (this.abort = abort),
      });
      if (res.statusCode !== 200) {
        this.c.log(
          `replicate follow: snapshot refresh: HTTP ${res.statusCode}: ${errorText(await readAll(res))}`,
        );
        return;
      }
      const stored = await store(res, this.c.ws);
      if (this.c.isStopped()) return;
      await this.c.recordBase({
        file: stored.file,
        fetched_at: new Date().toISOString(),
        wal_positions: stored.wal_positions,
      });
    } catch (err) {
      if (!this.c.isStopped())
        this.c.log(`replicate follow: snapshot refresh failed: ${(err as Error).message}`);
    }
  }
}
