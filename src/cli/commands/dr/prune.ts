/**
 * `bernstein dr prune`: restic-style keep rules applied to a location. A location that holds a
 * WAL archive is pruned as one (prune-archive.ts); `--from` and `--at` both name the location.
 */
import type { Command } from "commander";
import { ExitCode, UserError } from "../../../errors/errors.js";
import { openCatalogue } from "../../../storage/open-store.js";
import { pruneLocation } from "../../../storage/prune.js";
import { Output } from "../../output.js";
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

export function registerPrune(dr: Command): void {
  addRemoteOptions(
    addKeepOptions(
      dr
        .command("prune")
        .description(
          "delete old backups (or a WAL archive's old snapshots and segments) by restic-style keep rules; never the newest verified one",
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
    const res = await pruneLocation(store, policy, { dryRun: opts.dryRun });
    out.result({ ok: true, ...res }, () => {
      for (const d of res.decisions) {
        const verb = d.action === "keep" ? "keep  " : res.dry_run ? "would delete" : "delete";
        out.line(`${verb} ${d.name}  (${d.reasons.join("; ")})`);
      }
      out.line(
        `${res.kept} kept, ${res.dry_run ? `${res.decisions.length - res.kept} would be deleted` : `${res.deleted} deleted`}` +
          (res.foreign_ignored.length ? `, ${res.foreign_ignored.length} foreign file(s) left alone` : ""),
      );
    });
  });
}
