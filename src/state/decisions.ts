/**
 * The decision protocol (docs/ARCHITECTURE.md): an intent (`committed=false`) is durable in the WAL
 * before the action runs, and a commit (`committed=true`, same type, same inputs, results in
 * `output`) after it. Only commits change the state; each commit is applied to the in-memory state
 * with the reducer of reducer.ts, and each task state transition gets an audit event.
 *
 * Intents of `task_completed`, `task_failed` and `task_interrupted` carry their output too: the
 * facts they commit (exit code, cost) come from a completion record under `runtime/completed/`,
 * which archives of older versions and of the Python reference leave out, so a replay must be
 * able to finish them from the WAL alone.
 */
import type { AuditLog } from "../audit/log.js";
import type { JsonObject, WalEntry } from "../wal/entry.js";
import type { WalWriter } from "../wal/writer.js";
import type { Workspace } from "../workspace/layout.js";
import { applyEntry, type OrchestratorState } from "./reducer.js";

export const ACTOR = "orchestrator";

export interface DecisionLogOptions {
  ws: Workspace;
  wal: WalWriter;
  audit: AuditLog | null;
  state: OrchestratorState;
  /** Called after every commit (checkpoint cadence, DR snapshot boundary). */
  onCommit?: (entry: WalEntry) => void | Promise<void>;
}

export class DecisionLog {
  readonly ws: Workspace;
  readonly wal: WalWriter;
  readonly audit: AuditLog | null;
  state: OrchestratorState;
  /** Commits written by this process. */
  commits = 0;
  private readonly onCommit?: (entry: WalEntry) => void | Promise<void>;

  constructor(opts: DecisionLogOptions) {
    this.ws = opts.ws;
    this.wal = opts.wal;
    this.audit = opts.audit;
    this.state = opts.state;
    this.onCommit = opts.onCommit;
  }

  get runId(): string {
    return this.wal.runId;
  }

  /** The intent: durable before the action. */
  async intent(decisionType: string, inputs: JsonObject, output: JsonObject = {}): Promise<WalEntry> {
    const entry = await this.wal.append({
      decision_type: decisionType,
      inputs,
      output,
      actor: ACTOR,
      committed: false,
    });
    this.state = applyEntry(this.state, this.runId, entry); // advances wal_position only
    return entry;
  }

  /** The commit: durable, then applied to the state. */
  async commit(decisionType: string, inputs: JsonObject, output: JsonObject = {}): Promise<WalEntry> {
    const entry = await this.wal.append({
      decision_type: decisionType,
      inputs,
      output,
      actor: ACTOR,
      committed: true,
    });
    this.state = applyEntry(this.state, this.runId, entry);
    this.commits++;
    await this.onCommit?.(entry);
    return entry;
  }

  /** Informational entry (no state change, never replayed). */
  async info(decisionType: string, inputs: JsonObject = {}, output: JsonObject = {}): Promise<WalEntry> {
    const entry = await this.wal.append({
      decision_type: decisionType,
      inputs,
      output,
      actor: ACTOR,
      committed: true,
    });
    this.state = applyEntry(this.state, this.runId, entry); // advances wal_position only
    return entry;
  }

  /** intent → action → commit. The action returns the commit's output (default: the intent's). */
  async decide(
    decisionType: string,
    inputs: JsonObject,
    action: () => Promise<JsonObject | void>,
    intentOutput: JsonObject = {},
  ): Promise<WalEntry> {
    crashPoint(decisionType, "before_intent");
    await this.intent(decisionType, inputs, intentOutput);
    crashPoint(decisionType, "before_action");
    const output = (await action()) ?? intentOutput;
    crashPoint(decisionType, "after_action");
    const entry = await this.commit(decisionType, inputs, output);
    crashPoint(decisionType, "after_commit");
    return entry;
  }

  /** One audit event per task state transition (no-op when the workspace has no audit key). */
  async auditTask(eventType: string, taskId: string, details: JsonObject): Promise<void> {
    if (!this.audit) return;
    await this.audit.append({
      event_type: eventType,
      actor: ACTOR,
      resource_type: "task",
      resource_id: taskId,
      details: { ...details, run_id: this.runId },
    });
  }
}

/**
 * Fault injection for the crash tests: `BERNSTEIN_CRASH_AT=<decision_type>:<phase>[:<n>[:<signal>]]`
 * makes the process SIGKILL itself (or send itself `signal`, e.g. SIGINT: handled once the
 * current step yields, as a Ctrl-C at that instant) at that point of the n-th such decision
 * (default the first). Phases: before_intent, before_action, after_action, after_commit; other
 * multi-step work names its own (`dr_rekey:after_rename`, `dr_rekey:after_journal`, `dr_rekey:after_header`,
 * `dr_restore:after_journal`, `dr_restore:between_renames`). Unset in normal use.
 */
const CRASH_AT = process.env.BERNSTEIN_CRASH_AT;
let crashSeen = 0;
/** Also called inside actions with several steps (the git merge of `task_merged`). */
export function crashPoint(decisionType: string, phase: string): void {
  if (!CRASH_AT) return;
  const [type, at, nth, signal] = CRASH_AT.split(":");
  if (type !== decisionType || at !== phase) return;
  if (++crashSeen === Number(nth || 1)) process.kill(process.pid, (signal as NodeJS.Signals) || "SIGKILL");
}
