/**
 * The follower's acknowledgements, sent in the background so the next pull starts at once: at
 * most one ack is in flight, and a newer position waiting behind it is sent right after (an ack
 * carries all runs' positions, so one is enough).
 */
export class AckSender {
  private inFlight: Promise<void> | null = null;
  private dirty = false;

  constructor(
    private readonly c: {
      send: () => Promise<void>;
      isStopped: () => boolean;
      /** A background ack failed (the next one tries again). */
      onError: (err: Error) => void;
    },
  ) {}

  soon(): void {
    if (this.inFlight) {
      this.dirty = true;
      return;
    }
    this.inFlight = this.c
      .send()
      .catch((err: Error) => this.c.onError(err))
      .finally(() => {
        this.inFlight = null;
        if (this.dirty && !this.c.isStopped()) {
          this.dirty = false;
          this.soon();
        }
      });
  }

  /** Resolves once no ack is in flight (the one in flight now has settled). */
  async settled(): Promise<void> {
    await this.inFlight;
  }
}
