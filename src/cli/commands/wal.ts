/**
 * `bernstein wal verify|show|fingerprint`: check, read and fingerprint the write-ahead log.
 * verify exits 1 on any break and names run, seq and line; the torn tail a crash leaves on an
 * open run (docs/wal.md) is no break: a warning names it, exit 0. An unknown --run is a usage
 * error (exit 2) that lists the runs there are.
 */
import type { Command } from "../../vendor/commander.js";
import { orderedJson } from "../../json/canonical.js";
import { entryLine, entryTimeMs, type WalEntry } from "../../wal/entry.js";
import { Fingerprint } from "../../wal/fingerprint.js";
import { WalReadError, listRuns, readWalEntries, type RunInfo } from "../../wal/reader.js";
import { OpenIntents } from "../../wal/recovery.js";
import { describeTornTail, verifyRun } from "../../wal/torn-tail.js";
import { describeBackupLogProblem } from "../../dr/backup-log.js";
import { findWalRollbacks } from "../../dr/rollback.js";
import { openWorkspace, type Workspace } from "../../workspace/layout.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { intOption } from "../number-option.js";
import { shown } from "../../workspace/shown-path.js";
import { Output, globalsOf, stdoutClosed } from "../output.js";

async function pickRuns(ws: Workspace, runId: string | undefined): Promise<RunInfo[]> {
  const runs = await listRuns(ws);
  if (runId === undefined) return runs;
  const run = runs.find((r) => r.run_id === runId);
  if (!run) {
    const there = runs.length ? runs.map((r) => r.run_id).join(", ") : "none";
    throw new UserError(
      `unknown run ${JSON.stringify(runId)}; runs in ${shown(ws.walDir)}: ${there}`,
      ExitCode.USAGE,
      {
        runs: runs.map((r) => r.run_id),
      },
    );
  }
  return [run];
}

/** One run: the one --run names, else the newest (the last in run order). */
async function pickOneRun(ws: Workspace, runId: string | undefined): Promise<RunInfo> {
  const runs = await pickRuns(ws, runId);
  const run = runs.at(-1);
  if (!run)
    throw new UserError(
      `no WAL runs in ${shown(ws.walDir)} (\`bernstein start\` records one)`,
      ExitCode.USAGE,
    );
  return run;
}

function corruptMessage(err: WalReadError): string {
  return `${err.message}; run \`bernstein wal verify --run ${err.error.run_id}\``;
}

function corrupt(err: unknown): never {
  if (err instanceof WalReadError) {
    throw new UserError(corruptMessage(err), ExitCode.CORRUPT, { wal_error: err.error });
  }
  throw err;
}

function entryLineText(e: WalEntry): string {
  const when = new Date(entryTimeMs(e.timestamp)).toISOString();
  const kind = e.committed ? "commit" : "intent";
  const output = Object.keys(e.output).length ? ` -> ${orderedJson(e.output)}` : "";
  return `${e.seq}\t${when}\t${kind}\t${e.decision_type}\t${e.actor}\t${orderedJson(e.inputs)}${output}`;
}

/** The WAL line of an entry without its newline (lossless: big integers and floats as written). */
function entryJson(e: WalEntry): string {
  return entryLine(e).slice(0, -1);
}

export function registerWal(program: Command): void {
  const wal = program.command("wal").description("write-ahead log: verify, show, fingerprint");

  wal
    .command("verify")
    .description(
      "verify the hash chain of every run (or one), that no run ends before a position its closed marker, a checkpoint or a backup record names, and that no run repeats another's entries (a copied run file); exit 1 on any break (a crash's torn tail, which start cuts, is a warning)",
    )
    .option("--run <id>", "only this run")
    .option(
      "--jobs <n>",
      "worker threads hashing each run (default 0: this thread only, the least CPU per entry)",
      intOption("--jobs"),
    )
    .action(async (opts: { run?: string; jobs?: number }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const runs = await pickRuns(ws, opts.run);
      const { rollbacks, checked, unreadable_backup_rows } = await findWalRollbacks(ws, { runId: opts.run });
      // A backup row that cannot be read may have held a position the WAL must reach.
      for (const p of unreadable_backup_rows) out.warn(describeBackupLogProblem(p));
      const problemLine = (l: string) => {
        if (out.opts.quiet) process.stderr.write(l + "\n");
        else out.line(l);
      };
      const results = [];
      for (const run of runs) {
        // A crash's torn tail (an open run, bad lines only after the newest valid one) is no
        // break: start cuts it. Reported as such, the chain before it being intact.
        const { result, torn_tail } = await verifyRun(ws, run, { workers: opts.jobs });
        const r = torn_tail
          ? { ...result, ok: true, entries: torn_tail.line - 1, errors: [], error_count: 0 }
          : result;
        // A rollback is reported where the lost entry should be: the line after the WAL's end (a
        // corrupt closed marker, which lost the recorded end, there too). A repeated run is also
        // the business of the run it repeats, when that one is asked for.
        const lost = rollbacks
          .filter(
            (b) =>
              b.run_id === run.run_id ||
              (opts.run !== undefined && b.kind === "repeated_run" && b.recorded_by === run.run_id),
          )
          .map((b) => ({
            run_id: b.run_id,
            seq: b.expected_seq ?? (b.wal_last_seq ?? -1) + 1,
            line: Math.min(b.expected_seq ?? Infinity, (b.wal_last_seq ?? -1) + 1) + 1,
            kind: b.kind,
            message: b.message,
          }));
        const ok = r.ok && lost.length === 0;
        results.push({
          ...r,
          ok,
          errors: [...r.errors, ...lost],
          error_count: r.error_count + lost.length,
          torn_tail,
        });
        // A line the running orchestrator is writing is no warning: it completes it.
        if (torn_tail && !torn_tail.orchestrator_running) out.warn(describeTornTail(r.run_id, torn_tail));
        if (!out.opts.json) {
          if (ok) {
            out.line(
              `${r.run_id}: ok, ${r.entries} entries, last seq ${r.last_seq} (${r.last_hash.slice(0, 12)})${torn_tail ? (torn_tail.orchestrator_running ? ", a line being written" : ", torn tail") : ""}`,
            );
            if (torn_tail?.orchestrator_running) out.line(describeTornTail(r.run_id, torn_tail));
          } else {
            for (const e of [...r.errors, ...lost])
              problemLine(`${e.run_id}: seq ${e.seq}, line ${e.line}: ${e.kind}: ${e.message}`);
            const more = r.error_count > r.errors.length ? ` (first ${r.errors.length} shown)` : "";
            out.line(
              `${r.run_id}: BROKEN, ${r.error_count + lost.length} problem(s) in ${r.entries} lines${more}`,
            );
          }
        }
      }
      // Records naming a run whose WAL file is gone altogether.
      const missing = rollbacks.filter((b) => b.kind === "missing_run");
      if (!out.opts.json) for (const b of missing) problemLine(`${b.run_id}: missing_run: ${b.message}`);
      const ok = results.every((r) => r.ok) && missing.length === 0;
      out.result(
        {
          ok,
          runs: results.map((r) => ({
            run_id: r.run_id,
            ok: r.ok,
            entries: r.entries,
            bytes: r.bytes,
            last_seq: r.last_seq,
            last_hash: r.last_hash,
            error_count: r.error_count,
            errors: r.errors,
            ...(r.torn_tail ? { torn_tail: r.torn_tail } : {}),
            workers: r.workers,
          })),
          rollbacks,
          compared: checked,
          unreadable_backup_rows,
        },
        () => {
          if (runs.length === 0 && missing.length === 0) out.line(`no WAL runs in ${shown(ws.walDir)}`);
          else if (runs.length > 1 || missing.length)
            out.line(ok ? `all ${runs.length} runs intact` : `WAL BROKEN`);
        },
      );
      if (!ok) process.exitCode = ExitCode.CHECK_FAILED;
    });

  wal
    .command("show")
    .description("print the entries of a run")
    .option("--run <id>", "the run (default: the newest)")
    .option("--from-seq <n>", "start at this seq", intOption("--from-seq"))
    .option("--uncommitted", "only intents that no commit closes (what replay would consider)")
    .action(async (opts: { run?: string; fromSeq?: number; uncommitted?: boolean }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const fromSeq = opts.fromSeq ?? 0;
      const ws = await openWorkspace(g.sdd);
      const run = await pickOneRun(ws, opts.run);
      const emit = makeEmitter(out, run.run_id);
      try {
        if (opts.uncommitted) {
          const tracker = new OpenIntents();
          for await (const { entry } of readWalEntries(run.file, { runId: run.run_id, fromSeq }))
            tracker.add(entry);
          for (const e of tracker.list()) emit.entry(e);
        } else {
          for await (const { entry } of readWalEntries(run.file, { runId: run.run_id, fromSeq })) {
            emit.entry(entry);
            // The reader stopped early (`| head`): reading the rest of a long WAL is wasted.
            if (stdoutClosed()) break;
          }
        }
      } catch (err) {
        if (!(err instanceof WalReadError)) throw err;
        // Entries before the break are shown; the break ends the listing (exit 5).
        const message = corruptMessage(err);
        emit.end(false, message);
        process.stderr.write(`bernstein: ${message}\n`);
        process.exitCode = ExitCode.CORRUPT;
        return;
      }
      emit.end(true);
    });

  wal
    .command("fingerprint")
    .description("the Python-compatible execution fingerprint of a run")
    .option("--run <id>", "the run (default: the newest)")
    .action(async (opts: { run?: string }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const run = await pickOneRun(ws, opts.run);
      const fp = new Fingerprint();
      try {
        for await (const { entry } of readWalEntries(run.file, { runId: run.run_id })) fp.add(entry);
      } catch (err) {
        corrupt(err);
      }
      const fingerprint = fp.hex();
      out.result({ ok: true, run_id: run.run_id, entries: fp.entries, fingerprint }, () =>
        out.line(fingerprint),
      );
    });
}

/**
 * Streams entries out as they are read: human lines, or with --json one document
 * `{"run_id", "entries": [...], "ok"}` written piece by piece (a WAL never sits in memory).
 */
function makeEmitter(out: Output, runId: string) {
  let count = 0;
  let buffered = "";
  const flush = () => {
    if (buffered) process.stdout.write(buffered);
    buffered = "";
  };
  if (out.opts.json) buffered = `{"run_id":${JSON.stringify(runId)},"entries":[`;
  return {
    entry(e: WalEntry) {
      if (out.opts.json) buffered += (count > 0 ? "," : "") + "\n" + entryJson(e);
      else if (!out.opts.quiet) buffered += entryLineText(e) + "\n";
      count++;
      if (buffered.length > 1 << 16) flush();
    },
    end(ok: boolean, error?: string) {
      if (out.opts.json) {
        const err = error === undefined ? "" : `,"error":${JSON.stringify(error)}`;
        buffered += `\n],"count":${count},"ok":${ok}${err}}\n`;
      }
      flush();
    },
  };
}
