/** `bernstein dr prune`: restic-style keep rules applied to a location. */
import type { Command } from "commander";
import { openCatalogue } from "../../../storage/open-store.js";
import { pruneLocation } from "../../../storage/prune.js";
import { Output } from "../../output.js";
import {
  addKeepOptions,
  addRemoteOptions,
  policyFrom,
  s3OptionsFrom,
  checkKeepRules,
  type KeepFlags,
  type RemoteFlags,
} from "./options.js";

export function registerPrune(dr: Command): void {
  addRemoteOptions(
    addKeepOptions(
      dr
        .command("prune")
        .description(
          "delete old backups at a location by restic-style keep rules; never the newest verified one",
        )
        .requiredOption("--at <location>", "folder or s3://bucket/prefix/")
        .option("--dry-run", "show what would be kept and deleted, delete nothing"),
    ),
  ).action(async (opts: RemoteFlags & KeepFlags & { at: string; dryRun?: boolean }, cmd: Command) => {
    const out = Output.of(cmd);
    const policy = policyFrom(opts);
    checkKeepRules(policy);
    const store = await openCatalogue(opts.at, s3OptionsFrom(opts));
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
