/**
 * The state checks `dr verify` fails an archive on, run where a backup or a restore holds the
 * state as a folder, so that they say the same (docs/dr.md "Damage a backup holds"): each WAL's
 * chain (`verifyWal`), each WAL's end against the positions recorded for it (`findWalRollbacks`)
 * and the audit chain (`verifyAuditLog`, which needs the key). The checkers are their owners';
 * this file only runs them on a folder and words what they find, one line each. They load when
 * run: a restore of an archive that records its checks runs none (their modules cost start-up).
 */
import path from "node:path";
import { listAuditFiles } from "../audit/files.js";
import { AuditKeyMissingError, loadAuditKey } from "../audit/key.js";
import type { WalError } from "../wal/chain.js";
import { listWalRunFiles } from "../wal/run-files.js";
import { Workspace } from "../workspace/layout.js";
import { shown } from "../workspace/shown-path.js";
import { findingWording, type AuditCheck, type Manifest, type StateChecks } from "./manifest.js";

/** The audit key to check the chain with, and how to name it in messages. */
export interface AuditKeyForCheck {
  key?: Buffer;
  /** "the audit key /path" */
  named: string;
  /** Why there is no key, for the skipped check's detail. */
  missing?: string;
}

/** The key file at `keyPath` (the workspace's, which `audit verify` uses), or why there is none. */
export async function auditKeyAt(keyPath: string | undefined): Promise<AuditKeyForCheck> {
  if (!keyPath) return { named: "", missing: "no audit key" };
  try {
    return {
      key: (await loadAuditKey({ keyFile: keyPath, create: false })).key,
      named: `the audit key ${shown(keyPath)}`,
    };
  } catch (err) {
    if (err instanceof AuditKeyMissingError)
      return { named: "", missing: `no audit key at ${shown(keyPath)}` };
    return { named: "", missing: (err as Error).message };
  }
}

/** The first break of each WAL chain under `root` (a `.sdd` folder), by run id. */
export async function walChainBreaks(root: string): Promise<WalError[]> {
  const runs = (await listWalRunFiles(new Workspace(root).walDir).catch(() => [])).sort((a, b) =>
    a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : 0,
  );
  const { verifyWal } = await import("../wal/reader.js");
  const breaks: WalError[] = [];
  for (const { run_id, file } of runs) {
    const first = (await verifyWal(file, run_id)).errors[0];
    if (first) breaks.push(first);
  }
  return breaks;
}

/** The audit chain under `root`, checked with `key` when there is one (skipped without). */
export async function checkAuditChain(root: string, key: AuditKeyForCheck): Promise<AuditCheck> {
  const dir = path.join(root, "audit");
  if (!(await listAuditFiles(dir).catch(() => [])).length)
    return { status: "skipped", detail: "no audit log" };
  if (!key.key)
    return {
      status: "skipped",
      detail: `not checked: ${key.missing ?? "no audit key"} (the HMAC chain needs it)`,
    };
  const { auditBreakSummary, verifyAuditLog } = await import("../audit/verify.js");
  const r = await verifyAuditLog(dir, key.key);
  // No entry verifies: the key is another log's (or every entry was altered), which tells nothing
  // of damage; the writers of this command say so themselves (one line).
  if (r.signed_with_another_key)
    return {
      status: "skipped",
      detail: `not checked: no entry verifies with ${key.named} (the log was signed with another key, or every entry was altered)`,
    };
  if (r.ok)
    return {
      status: "ok",
      detail: `${r.entries} entries in ${r.files.length} file(s), chain intact, verified with ${key.named}`,
    };
  return { status: "failed", detail: auditBreakSummary(r, key.named, (f) => path.relative(root, f)) };
}

/** Rollbacks and the audit chain under `root` (what a manifest's `state_checks` records). */
export async function checkState(root: string, key: AuditKeyForCheck): Promise<StateChecks> {
  const { findWalRollbacks } = await import("./rollback.js");
  return {
    wal_rollbacks: (await findWalRollbacks(new Workspace(root))).rollbacks,
    audit: await checkAuditChain(root, key),
  };
}

/**
 * One warning line per finding of `checks` (and per WAL chain break in `breaks`); `when` says
 * where it was found ("when this backup was taken", "in this archive").
 */
export function stateWarnings(
  checks: StateChecks | undefined,
  breaks: readonly WalError[],
  when: string,
): string[] {
  const out = breaks.map(
    (b) =>
      `wal run ${b.run_id}: chain broken at seq ${b.seq} (line ${b.line}: ${b.kind}) ${when}; \`dr verify\` fails it and \`start\` refuses it`,
  );
  for (const r of checks?.wal_rollbacks ?? []) {
    out.push(
      `wal run ${r.run_id}: ${findingWording(r.kind)} ${when}: ${r.message}; \`dr verify\` fails it and \`start\` refuses it`,
    );
  }
  if (checks?.audit.status === "failed")
    out.push(
      `audit chain broken ${when}: ${checks.audit.detail}; \`dr verify\` and \`audit verify\` fail it`,
    );
  return out;
}

/**
 * The warnings an archive's manifest records of the state it holds (`wal_breaks`,
 * `state_checks`); undefined when it records no state checks (the Python original's, ours from
 * before them): only reading the state tells then.
 */
export function recordedDamage(manifest: Record<string, unknown>): string[] | undefined {
  const m = manifest as Partial<Manifest>;
  if (!m.state_checks) return undefined;
  return stateWarnings(
    m.state_checks,
    m.wal_breaks ?? [],
    "when this backup was taken (recorded in its manifest)",
  );
}
