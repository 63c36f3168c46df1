/** `bernstein dr list`: the backups at a location, optionally checked against the audit chain. */
import type { Command } from "../../../vendor/commander.js";
import { listCatalogue, type CatalogueEntry } from "../../../storage/catalogue.js";
import { openCatalogue } from "../../../storage/open-store.js";
import { openWorkspace } from "../../../workspace/layout.js";
import { ExitCode, UserError } from "../../../errors/errors.js";
import type { PasswordFlags } from "../../password.js";
import { Output, globalsOf } from "../../output.js";
import { failureWords, printListCheck, rekeyingOf, runListCheck, type ListCheck } from "./list-check.js";
import {
  addPasswordOptions,
  addRemoteOptions,
  dropFileAtForFrom,
  s3OptionsFrom,
  type RemoteFlags,
} from "./options.js";
import { catalogueRows, shown } from "./source.js";
import { describeBackupLogProblem, type BackupLogProblem } from "../../../dr/backup-log.js";

type ListFlags = RemoteFlags &
  PasswordFlags & { at?: string; from?: string; check?: boolean; deep?: boolean; identityFile?: string };

function humanSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function entryJson(e: CatalogueEntry, fingerprints: string[] | undefined) {
  return {
    name: e.name,
    created_at: e.created.toISOString(),
    size_bytes: e.size,
    file_count: e.record?.file_count ?? null,
    encrypted: e.encrypted,
    source_host: e.record?.source_host ?? null,
    sha256: e.record?.sha256 ?? null,
    manifest_sha256: e.record?.manifest_sha256 ?? null,
    ...(e.record?.age_payload_sha256 !== undefined
      ? {
          age_header_bytes: e.record.age_header_bytes,
          age_header_sha256: e.record.age_header_sha256,
          age_payload_sha256: e.record.age_payload_sha256,
        }
      : {}),
    verified: e.verified,
    verified_at: e.record?.verified_at ?? null,
    /** An `.age` backup's recipients as the workspace's catalogue recorded them (null: unknown). */
    recipient_fingerprints: fingerprints ?? null,
  };
}

/** `dr list --from LOCATION`: a WAL archive's generations (dr-archive-read.ts prints them). */
async function listArchiveAt(cmd: Command, from: string, opts: ListFlags): Promise<void> {
  if (opts.deep)
    throw new UserError(
      "dr list: --deep is for --at (backups); --from --check reads every segment once",
      ExitCode.USAGE,
    );
  const { readKeysOf, walArchiveAt } = await import("./archive-point.js");
  const store = await walArchiveAt(from, opts);
  if (!store)
    throw new UserError(
      `dr list --from ${from}: no WAL archive there (no gen-* object); the backups at a location are listed with --at`,
      ExitCode.USAGE,
    );
  const { listWalArchive } = await import("../dr-archive-read.js");
  await listWalArchive(cmd, store, opts.check, await readKeysOf(opts));
}

export function registerList(dr: Command): void {
  addRemoteOptions(
    addPasswordOptions(
      dr
        .command("list")
        .description(
          "list the backups at a location (--at), or a WAL archive's generations, windows and gaps (--from)",
        )
        .option("--at <location>", "backups at this folder or s3://bucket/prefix/")
        .option("--from <location>", "the WAL archive at this folder or s3://bucket/prefix/")
        .option(
          "--check",
          "--at: compare with what the audit chain says was written there; --from: continuity of every generation",
        )
        .option(
          "--deep",
          "with --at --check: hash every byte, and open every archive (decrypted with --identity-file / the password) to check its files",
        ),
    ),
  ).action(async (given: ListFlags, cmd: Command) => {
    const opts = dropFileAtForFrom(cmd, given);
    if ((opts.at === undefined) === (opts.from === undefined))
      throw new UserError(
        `dr list: give --at LOCATION (the backups there) or --from LOCATION (a WAL archive there)${opts.at === undefined ? "" : ", not both"}`,
        ExitCode.USAGE,
      );
    if (opts.from !== undefined) return listArchiveAt(cmd, opts.from, opts);
    if (opts.deep && !opts.check)
      throw new UserError(
        "dr list: --deep goes with --check (dr list --at LOCATION --check --deep)",
        ExitCode.USAGE,
      );
    const out = Output.of(cmd);
    const store = await openCatalogue(opts.at!, s3OptionsFrom(opts));
    const cat = await listCatalogue(store);
    const sdd = globalsOf(cmd).sdd;
    const unreadable: BackupLogProblem[] = [];
    const newest = await catalogueRows(sdd, unreadable);
    // The check compares the store with the catalogue: a backup recorded on a line that cannot
    // be read is not looked for.
    if (opts.check)
      for (const p of unreadable)
        out.warn(describeBackupLogProblem(p, "the backup it recorded is not checked"));
    const fingerprintsOf = (e: CatalogueEntry) => newest.get(store.describe(e.name))?.recipient_fingerprints;
    const backups = [...cat.entries].reverse().map((e) => entryJson(e, fingerprintsOf(e)));
    let check: ListCheck | undefined;
    if (opts.check) {
      const ws = await openWorkspace(sdd);
      check = await runListCheck(cmd, out, {
        store,
        entries: cat.entries,
        ws,
        newest,
        deep: opts.deep,
        keys: opts,
      });
    }
    const bad = [
      ...(check?.findings.filter((f) => f.status === "missing" || f.status === "replaced") ?? []),
      ...(check?.content?.filter((c) => c.status === "damaged") ?? []),
    ];
    const rekeying = check ? rekeyingOf(check) : [];
    out.result(
      {
        ok: bad.length === 0 && rekeying.length === 0,
        location: store.root,
        backups,
        foreign_ignored: cat.foreign,
        ...(opts.check && unreadable.length ? { unreadable_backup_rows: unreadable } : {}),
        ...(check
          ? {
              check: check.findings,
              removed_recipients: check.removed,
              ...(check.content ? { content: check.content } : {}),
            }
          : {}),
      },
      () => {
        if (backups.length === 0) out.line(`no bernstein backups at ${shown(store.root)}`);
        else {
          out.line(`${backups.length} backup(s) at ${shown(store.root)} (newest first):`);
          out.line(
            "created_at            size       files  enc  verified  host            sha256        name  [recipients]",
          );
          for (const b of backups) {
            out.line(
              [
                b.created_at.replace(".000Z", "Z").padEnd(21),
                humanSize(b.size_bytes).padStart(10),
                String(b.file_count ?? "?").padStart(6),
                (b.encrypted ? "yes" : "no").padEnd(4),
                (b.verified ? "yes" : "NO").padEnd(9),
                (b.source_host ?? "?").slice(0, 15).padEnd(15),
                shownHash(b).padEnd(13),
                b.name + (b.recipient_fingerprints ? `  [${b.recipient_fingerprints.join(", ")}]` : ""),
              ].join(" "),
            );
          }
        }
        if (backups.some((b) => !b.sha256 && b.age_payload_sha256))
          out.line("p:… = sha256 of the payload after the age header (the header was rewritten by a rekey)");
        if (cat.foreign.length > 0) out.line(`${cat.foreign.length} foreign file(s) ignored (never pruned)`);
        if (check) printListCheck(out, check, bad.length);
      },
    );
    if (bad.length > 0)
      out.failed(
        ExitCode.CHECK_FAILED,
        `dr list --check: ${bad.length} backup(s) ${failureWords(check!)} at ${store.root}; first: ${bad[0]!.name}: ${bad[0]!.detail}`,
      );
    // Nothing found wrong, but not everything checked: run again, as after `dr verify`'s exit 3.
    else if (rekeying.length > 0)
      out.failed(
        ExitCode.LOCKED,
        `dr list --check: ${rekeying.length} finding(s) about backups being rekeyed at ${store.root}, check again once the rekey has finished; first: ${rekeying[0]!.name}: ${rekeying[0]!.detail}`,
      );
  });
}

/** The whole file's sha256, or for an `.age` archive whose header a rekey rewrote, its payload's. */
function shownHash(b: { sha256: string | null; age_payload_sha256?: string }): string {
  if (b.sha256) return b.sha256.slice(0, 12);
  if (b.age_payload_sha256) return `p:${b.age_payload_sha256.slice(0, 10)}`;
  return "?";
}
