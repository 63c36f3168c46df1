/**
 * The cost ledger, `metrics/cost-ledger.jsonl`: one fsynced row per usage. Totals are always the
 * sum of every row, streamed (the Python original summed a capped in-memory list and under-counted
 * after a restart).
 */
import { canonicalJson, parseJson, PyFloat } from "../json/canonical.js";
import { asJsonObject, asNumber, type JsonObject } from "../json/object.js";
import { durableAppendLines, durableMkdir } from "../workspace/durable.js";
import type { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";
import path from "node:path";

export interface CostRow {
  /** ISO-8601 UTC. */
  timestamp: string;
  run_id: string;
  task_id: string;
  agent_id: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

export interface LedgerTotals {
  rows: number;
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  /** Per model, for reports. */
  by_model: Record<string, { rows: number; cost_usd: number; input_tokens: number; output_tokens: number }>;
  /** Lines that are not rows (a torn last line, damage), reported with their line number; never counted. */
  problems: { line: number; message: string }[];
}

/**
 * The usage a task's completion or failure commit reports in its `output`, as the fields of a
 * ledger row; null when it reports none (no row is written for an attempt that cost nothing).
 */
export function usageOf(
  out: JsonObject,
): Pick<CostRow, "model" | "input_tokens" | "output_tokens" | "cost_usd"> | null {
  const cost_usd = asNumber(out.cost_usd) ?? 0;
  const input_tokens = asNumber(out.input_tokens) ?? 0;
  const output_tokens = asNumber(out.output_tokens) ?? 0;
  if (!(cost_usd > 0 || input_tokens > 0 || output_tokens > 0)) return null;
  return {
    model: typeof out.model === "string" ? out.model : "unknown",
    input_tokens,
    output_tokens,
    cost_usd,
  };
}

/** Appends one row durably; resolves once it is on disk. Row fields are validated first. */
export async function appendCostRow(
  ws: Workspace,
  row: Omit<CostRow, "timestamp"> & { timestamp?: string },
): Promise<CostRow> {
  const full: CostRow = {
    timestamp: row.timestamp ?? new Date().toISOString(),
    run_id: row.run_id,
    task_id: row.task_id,
    agent_id: row.agent_id,
    model: row.model,
    input_tokens: row.input_tokens,
    output_tokens: row.output_tokens,
    cost_usd: row.cost_usd,
  };
  for (const k of ["input_tokens", "output_tokens", "cost_usd"] as const) {
    if (!Number.isFinite(full[k]) || full[k] < 0) throw new Error(`cost ledger: ${k} must be a number >= 0`);
  }
  await durableMkdir(path.dirname(ws.costLedger));
  // cost_usd is always written as a float (3.0, not 3), as Python would.
  const line = canonicalJson({ ...full, cost_usd: new PyFloat(full.cost_usd) }) + "\n";
  try {
    await durableAppendLines(ws.costLedger, line);
  } catch (err) {
    throw new Error(`cost ledger: appending to ${ws.costLedger}: ${(err as Error).message}`, { cause: err });
  }
  return full;
}

/** Money as the CLI prints it: dollars to four places (never a float's tail like 0.6000000000000001). */
export function formatUsd(usd: number): string {
  return `$${usd.toFixed(4)}`;
}

/** One line of the ledger: its row when the line is a JSON object (whatever its fields). */
export interface LedgerLine {
  line: number;
  row: JsonObject | undefined;
  /** False for a final line without a newline (an interrupted append). */
  terminated: boolean;
}

/** Streams the ledger's non-blank lines. A missing ledger has none. */
export async function* ledgerLines(ws: Workspace): AsyncGenerator<LedgerLine> {
  try {
    for await (const line of readLinesForward(ws.costLedger)) {
      if (!line.text.trim()) continue;
      let row;
      try {
        row = asJsonObject(parseJson(line.text));
      } catch {
        row = undefined;
      }
      yield { line: line.lineNo, row, terminated: line.terminated };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new Error(`cost ledger: reading ${ws.costLedger}: ${(err as Error).message}`, { cause: err });
  }
}

/** Streams every row and sums it. A missing ledger is zero. */
export async function ledgerTotals(ws: Workspace): Promise<LedgerTotals> {
  const totals: LedgerTotals = {
    rows: 0,
    cost_usd: 0,
    input_tokens: 0,
    output_tokens: 0,
    by_model: {},
    problems: [],
  };
  for await (const { line, row, terminated } of ledgerLines(ws)) {
    const cost = asNumber(row?.cost_usd);
    if (!row || cost === undefined) {
      totals.problems.push({
        line,
        message: terminated ? "not a cost row" : "torn last line (an interrupted append), not counted",
      });
      continue;
    }
    const input = asNumber(row.input_tokens) ?? 0;
    const output = asNumber(row.output_tokens) ?? 0;
    const model = typeof row.model === "string" ? row.model : "unknown";
    totals.rows++;
    totals.cost_usd += cost;
    totals.input_tokens += input;
    totals.output_tokens += output;
    const m = (totals.by_model[model] ??= { rows: 0, cost_usd: 0, input_tokens: 0, output_tokens: 0 });
    m.rows++;
    m.cost_usd += cost;
    m.input_tokens += input;
    m.output_tokens += output;
  }
  return totals;
}

/** The agent ids that have a row (a usage is recorded once per agent id). A missing ledger has none. */
export async function ledgerAgentIds(ws: Workspace): Promise<Set<string>> {
  const ids = new Set<string>();
  try {
    for await (const line of readLinesForward(ws.costLedger)) {
      try {
        const row = JSON.parse(line.text) as { agent_id?: unknown };
        if (typeof row.agent_id === "string") ids.add(row.agent_id);
      } catch {
        // a torn line is not a row
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return ids;
}

/**
 * Appends the row of a usage unless its agent id has one already: a decision finished again after
 * a crash between its ledger row and its commit must not count the usage twice. The ledger's agent
 * ids are read once, on the first usage, and kept up to date by this appender.
 */
export class CostRowsOncePerAgent {
  private agentIds: Set<string> | null = null;

  constructor(private readonly ws: Workspace) {}

  /** The row of the usage `out` reports; true when a row was written (none for no usage, or a repeat). */
  async append(
    row: Pick<CostRow, "run_id" | "task_id" | "agent_id"> & { timestamp?: string },
    out: JsonObject,
  ): Promise<boolean> {
    const usage = usageOf(out);
    if (!usage) return false;
    this.agentIds ??= await ledgerAgentIds(this.ws);
    if (this.agentIds.has(row.agent_id)) return false;
    await appendCostRow(this.ws, { ...row, ...usage });
    this.agentIds.add(row.agent_id);
    return true;
  }
}
