/** What `start`'s recovery found and did, as `start` reports it (lost agents count on during the run). */
import { emptyReplaySummary, type ReplaySummary } from "../state/replay.js";

export interface RecoverySummary {
  run_id: string;
  replay: ReplaySummary;
  /** Runs whose chain was verified before loading. */
  runs_verified: number;
  /** Torn tails cut back by the writer (never a break). */
  torn_tails_repaired: number;
  reattached: number;
  completions_collected: number;
  orphaned_claims_requeued: number;
  lost_agents_requeued: number;
  adopted: number;
  folders_repaired: number;
  malformed: string[];
}

export function emptyRecoverySummary(
  runId: string,
  chains: { verified: number; repaired: number },
): RecoverySummary {
  return {
    run_id: runId,
    replay: emptyReplaySummary(),
    runs_verified: chains.verified,
    torn_tails_repaired: chains.repaired,
    reattached: 0,
    completions_collected: 0,
    orphaned_claims_requeued: 0,
    lost_agents_requeued: 0,
    adopted: 0,
    folders_repaired: 0,
    malformed: [],
  };
}
