/**
 * The Python-compatible execution fingerprint of a run:
 *   state = b""; per entry: state = sha256(state || "<type>:<sha256hex(canon(inputs))>:<sha256hex(canon(output))>")
 *   fingerprint = sha256hex(state)
 * Two runs that took the same decisions on the same inputs have the same fingerprint.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../json/canonical.js";
import { sha256Hex, type WalEntry } from "./entry.js";
import { readWalEntries, type ReadOptions } from "./reader.js";

export class Fingerprint {
  private state: Buffer = Buffer.alloc(0);
  private count = 0;

  add(entry: Pick<WalEntry, "decision_type" | "inputs" | "output">): void {
    const step = `${entry.decision_type}:${sha256Hex(canonicalJson(entry.inputs))}:${sha256Hex(canonicalJson(entry.output))}`;
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

/** Fingerprint of a WAL file (streaming; entries are hash-checked on the way). */
export async function fingerprintWal(
  file: string,
  opts: Pick<ReadOptions, "runId"> = {},
): Promise<{ fingerprint: string; entries: number }> {
  const fp = new Fingerprint();
  for await (const { entry } of readWalEntries(file, { runId: opts.runId })) fp.add(entry);
  return { fingerprint: fp.hex(), entries: fp.entries };
}
