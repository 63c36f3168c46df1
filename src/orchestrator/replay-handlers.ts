/**
 * The replay handlers of every decision type, each from the action module that makes the decision.
 * A new decision type brings its action module and adds its handlers here.
 */
import { adoptReplay } from "./actions/adopt.js";
import { claimReplay } from "./actions/claim.js";
import { outcomeReplay } from "./actions/complete.js";
import { retryReplay } from "./actions/fail.js";
import { interruptReplay } from "./actions/interrupt.js";
import type { ReplayHandlers } from "./actions/replay.js";
import type { RunContext } from "./run-context.js";
import { mergeReplay } from "./worktree-tasks.js";

export function replayHandlers(ctx: RunContext): ReplayHandlers {
  return {
    ...adoptReplay(ctx),
    ...claimReplay(ctx),
    ...outcomeReplay(ctx),
    ...retryReplay(ctx),
    ...interruptReplay(ctx),
    ...mergeReplay(ctx),
  };
}
