/**
 * A follower's epoch and what it knows of its leader's: a leader at an older epoch (a newer one
 * was promoted) or announcing an absurd one is refused; a newer epoch, from the leader, a peer's
 * request or a fence, is adopted durably.
 */
import type { Workspace } from "../workspace/layout.js";
import { ReplicationError } from "./ack-policy.js";
import { adoptEpoch, announcedEpochProblem, readEpoch } from "./epoch.js";
import { EpochRefusal } from "./follower-pull.js";
import { HttpError } from "./server.js";

export class FollowerEpoch {
  epoch = 1;
  /** The epoch the leader last announced (null: not heard yet). */
  leaderEpoch: number | null = null;
  /** When the leader last answered with its epoch (ms). */
  lastContactAt: number | null = null;

  constructor(
    private readonly ws: Workspace,
    private readonly log: (line: string) => void,
  ) {}

  async load(): Promise<void> {
    this.epoch = (await readEpoch(this.ws)).epoch;
  }

  /** Checks the epoch of a leader's answer: refuses an older or absurd one, adopts a newer one. */
  checkLeader(leaderEpoch: number | undefined, leaderUrl: string): Promise<void> | void {
    if (leaderEpoch === undefined) return;
    this.leaderEpoch = leaderEpoch;
    this.lastContactAt = Date.now();
    if (leaderEpoch < this.epoch) {
      throw new EpochRefusal(
        `leader ${leaderUrl} is at epoch ${leaderEpoch}, older than ours (${this.epoch}): a newer leader was promoted; refusing its entries`,
      );
    }
    const problem = announcedEpochProblem(leaderEpoch, this.epoch);
    if (problem) {
      throw new EpochRefusal(
        `leader ${leaderUrl} announces epoch ${leaderEpoch}: ${problem}; refusing its entries`,
      );
    }
    if (leaderEpoch > this.epoch) {
      return adoptEpoch(this.ws, leaderEpoch).then((s) => {
        this.epoch = s.epoch;
        this.log(`replicate follow: adopted epoch ${s.epoch} from the leader`);
      });
    }
  }

  /** A request to our endpoint carries a newer epoch: adopt it. */
  async adoptNewer(epoch: number | undefined): Promise<void> {
    if (epoch !== undefined && epoch > this.epoch) this.epoch = (await adoptEpoch(this.ws, epoch)).epoch;
  }

  /** `POST /fence`'s epoch: refused when absurd (400) or older than ours (exit 8), else adopted. */
  async fence(announced: unknown): Promise<void> {
    const problem = announcedEpochProblem(announced, this.epoch);
    if (problem)
      throw new HttpError(400, `fence: epoch ${JSON.stringify(announced) ?? "missing"}: ${problem}`);
    const epoch = announced as number;
    if (epoch < this.epoch)
      throw new ReplicationError(`fence at epoch ${epoch} is older than ours (${this.epoch})`);
    this.epoch = (await adoptEpoch(this.ws, epoch)).epoch;
  }
}
