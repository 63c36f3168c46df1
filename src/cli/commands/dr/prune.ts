/**
 * `bernstein dr prune`: restic-style keep rules applied to a location. A location that holds a
 * WAL archive is pruned as one (prune-archive.ts); `--from` and `--at` both name the location.
 */
import type { Command } from "../../../vendor/commander.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { openCatalogue } from "../../../storage/open-store.js";
import { PruneFailedError, pruneLocation, type PruneResult } from "../../../storage/prune.js";
import { DR_PRUNE_EVENT } from "../../../storage/audit-record.js";
import type { BackupStore } from "../../../storage/store.js";
import { recordAuditEvent } from "../../../dr/audit-event.js";
import { openWorkspace, type Workspace } from "../../../workspace/layout.js";
import { Output, globalsOf } from "../../output.js";
import { archiveAt, pruneArchive } from "./prune-archive.js";
import {
  addKeepOptions,
  addRemoteOptions,
  policyFrom,
  s3OptionsFrom,
  checkKeepRules,
  type KeepFlags,
  type RemoteFlags,
  dropFileAtForFrom,
} from "./options.js";

type PruneFlags = RemoteFlags & KeepFlags & { at?: string; from?: string; dryRun?: boolean };

function locationOf(opts: PruneFlags): string {
  if ((opts.at === undefined) === (opts.from === undefined))
    throw new UserError(
      "dr prune: give the location once, as --at LOCATION or --from LOCATION",
      ExitCode.USAGE,
    );
  return (opts.at ?? opts.from)!;
}

/**
 * Records the backups a prune deleted in the workspace's audit chain (one `dr.prune` event), so
 * that `dr list --check` tells them from backups deleted behind our back.
 */
export async function auditPruned(
  ws: Workspace | undefined,
  store: BackupStore,
  res: PruneResult,
  out: Output,
): Promise<void> {
  const deleted = res.decisions.filter((d) => d.deleted).map((d) => d.name);
  if (deleted.length === 0) return;
  if (!ws) {
    out.warn(
      "no workspace here (--sdd) to record this prune in: `dr list --check` of the workspace these backups came from will report what was deleted as missing",
    );
    return;
  }
  const audit = await recordAuditEvent(ws, {
    event_type: DR_PRUNE_EVENT,
    resource_type: "backup_location",
    resource_id: store.root,
    details: { root: store.root, deleted },
  });
  if (audit.warning) out.warn(`${audit.warning}; dr list --check will report what was deleted as missing`);
}

/** Names each backup whose record said verified but whose bytes no longer match it. */
export function warnNotIntact(out: Output, res: PruneResult): void {
  for (const n of res.not_intact)
    out.warn(
      `${n.name} does not match its record (${n.detail}): not counted as verified, the next intact backup is kept`,
    );
}

/** The workspace of --sdd when there is one: a location can be pruned from anywhere. */
async function workspaceIfAny(cmd: Command): Promise<Workspace | undefined> {
  return openWorkspace(globalsOf(cmd).sdd).catch((err: unknown) => {
    if (err instanceof UserError) return undefined;
    throw err;
  });
}

export function registerPrune(dr: Command): void {
  addRemoteOptions(
    addKeepOptions(
      dr
        .command("prune")
        .description(
          "delete old backups (or a WAL archive's old snapshots and segments) by restic-style keep rules; never the newest intact one",
        )
        .option("--at <location>", "folder or s3://bucket/prefix/")
        .option("--from <location>", "the same as --at (the word the WAL archive commands use)")
        .option("--dry-run", "show what would be kept and deleted, delete nothing"),
    ),
  ).action(async (given: PruneFlags, cmd: Command) => {
    const opts = dropFileAtForFrom(cmd, given);
    const out = Output.of(cmd);
    const policy = policyFrom(opts);
    checkKeepRules(policy);
    const store = await openCatalogue(locationOf(opts), s3OptionsFrom(opts));
    const archive = await archiveAt(store);
    if (archive) return pruneArchive(out, store, archive, policy, Boolean(opts.dryRun));
    const ws = await workspaceIfAny(cmd);
    const res = await pruneLocation(store, policy, { dryRun: opts.dryRun }).catch(async (err: unknown) => {
      // What was deleted before the failure is recorded all the same: else `dr list --check`
      // would report it missing for good.
      if (err instanceof PruneFailedError) {
        warnNotIntact(out, err.result);
        await auditPruned(ws, store, err.result, out);
      }
      throw err;
    });
    warnNotIntact(out, res);
    await auditPruned(ws, store, res, out);
    out.result({ ok: true, ...res }, () => {
      for (const d of res.decisions) {
        const verb = d.action === "keep" ? "keep  " : res.dry_run ? "would delete" : "delete";
        out.line(`${verb} ${d.name}  (${d.reasons.join("; ")})`);
      }
      if (res.orphan_records.length)
        out.line(
          `${res.dry_run ? "would remove" : "removed"} ${res.orphan_records.length} record(s) whose backup was gone: ${res.orphan_records.join(", ")}`,
        );
      out.line(
        `${res.kept} kept, ${res.dry_run ? `${res.decisions.length - res.kept} would be deleted` : `${res.deleted} deleted`}` +
          (res.foreign_ignored.length ? `, ${res.foreign_ignored.length} foreign file(s) left alone` : ""),
      );
    });
  });
}
