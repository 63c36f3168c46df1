/**
 * What the decisions of one run work with: the workspace, the decision log (WAL + state + audit),
 * and the small pieces of run state each owned by the module that changes it. Built by recovery,
 * passed to every action (`actions/`), the monitoring and the loop.
 */
import type { CostRowsOncePerAgent } from "../ledger/cost-ledger.js";
import type { Workspace } from "../workspace/layout.js";
import type { AgentsConfig } from "./agents.js";
import type { BacklogIntake } from "./backlog-intake.js";
import type { DecisionLog } from "../state/decisions.js";
import type { OrchestratorOptions, WarningGroup } from "./options.js";
import type { RecoverySummary } from "./recovery-summary.js";
import type { RetryBackoff } from "./retry-backoff.js";
import type { RunOutcome } from "./run-outcome.js";
import type { TaskFiles } from "./task-files.js";
import type { TrackedAgents } from "./tracked-agents.js";

export interface RunContext {
  readonly ws: Workspace;
  readonly opts: OrchestratorOptions;
  readonly dlog: DecisionLog;
  readonly agentsCfg: AgentsConfig;
  readonly files: TaskFiles;
  readonly intake: BacklogIntake;
  readonly agents: TrackedAgents;
  readonly backoff: RetryBackoff;
  readonly costRows: CostRowsOncePerAgent;
  readonly outcome: RunOutcome;
  readonly recovery: RecoverySummary;
  /** Worktree tasks whose merge waits (a dirty main worktree...): task id → why, as last logged. */
  readonly mergeWaits: Map<string, string>;
  warn(line: string, group?: WarningGroup): void;
  /** Ends the loop's pause (a wrapper exited). */
  wake(): void;
}
