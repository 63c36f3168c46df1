/**
 * The Python-compatible execution fingerprint of a run:
 *   state = b""; per entry: state = sha256(state || "<type>:<sha256hex(canon(inputs))>:<sha256hex(canon(output))>")
 *   fingerprint = sha256hex(state)
 * Two runs that took the same decisions on the same inputs have the same fingerprint.
 *
 * Git commit hashes are left out: a commit's hash covers its date, so two runs of the same backlog
 * on the same repository make different hashes for the same work. Inputs drop `base_commit`
 * (`task_spawn_confirmed`) and `head_commit` (`task_merged`); a `task_merged` output keeps only
 * whether a merge commit exists. No entry of the Python original has these fields, so its
 * fingerprints are unchanged.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../json/canonical.js";
import { sha256Hex, type JsonObject, type WalEntry } from "./entry.js";
import { readWalEntries, type ReadOptions } from "./reader.js";

export class Fingerprint {
  private state: Buffer = Buffer.alloc(0);
  private count = 0;

  add(entry: Pick<WalEntry, "decision_type" | "inputs" | "output">): void {
    const { inputs, output } = withoutCommitHashes(entry);
    const step = `${entry.decision_type}:${sha256Hex(canonicalJson(inputs))}:${sha256Hex(canonicalJson(output))}`;
    this.state = createHash("sha256").update(this.state).update(step, "utf8").digest();
    this.count++;
  }

  get entries(): number {
    return this.count;
  }

  hex(): string {
    return createHash("sha256").update(this.state).digest("hex");
  }
}

/** The entry as the fingerprint sees it: git commit hashes out (see the top of this file). */
function withoutCommitHashes(entry: Pick<WalEntry, "decision_type" | "inputs" | "output">): {
  inputs: JsonObject;
  output: JsonObject;
} {
  const { decision_type: type, inputs, output } = entry;
  if (type === "task_spawn_confirmed" && "base_commit" in inputs) {
    const { base_commit: _base, ...rest } = inputs;
    return { inputs: rest, output };
  }
  if (type === "task_merged") {
    const { head_commit: _head, ...rest } = inputs;
    if (!("merge_commit" in output)) return { inputs: rest, output };
    return { inputs: rest, output: { ...output, merge_commit: typeof output.merge_commit === "string" } };
  }
  return { inputs, output };
}

/** Fingerprint of a WAL file (streaming; entries are hash-checked on the way). */
export async function fingerprintWal(
  file: string,
  opts: Pick<ReadOptions, "runId"> = {},
): Promise<{ fingerprint: string; entries: number }> {
  const fp = new Fingerprint();
  for await (const { entry } of readWalEntries(file, { runId: opts.runId })) fp.add(entry);
  return { fingerprint: fp.hex(), entries: fp.entries };
}
