/** `bernstein start` (`stop` and `status`: status.ts). */
import { readLiveEndpoint } from "../../replication/endpoint.js";
import { spawn } from "node:child_process";
import { openSync, closeSync, fstatSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import type { Command } from "../../vendor/commander.js";
import { shown } from "../../workspace/shown-path.js";
import { loadedConfigOf } from "../../config/apply.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf, type GlobalOptions } from "../output.js";
import { openWorkspace, type Workspace } from "../../workspace/layout.js";
import { durableMkdir } from "../../workspace/durable.js";
import { BIN, launcherEnv, launcherFlags } from "../../workspace/launcher.js";
import { lockedBy, readLock } from "../../workspace/lock.js";
import { assertMayLead } from "../../workspace/replication-role.js";
import { Orchestrator, type RecoverySummary, type RunResult } from "../../orchestrator/orchestrator.js";
import { readStatusFile } from "../../orchestrator/control.js";
import { renderTaskCounts } from "../../orchestrator/status.js";
import { staleAfterFromEnv } from "../../state/replay.js";
import { cleanupOnInterrupt, onFirstInterrupt, type InterruptSignal } from "../../workspace/interrupt.js";
import { WarningDigest } from "../warning-digest.js";
import { intOption, secondsOption } from "../number-option.js";
import {
  addArchiveStartOptions,
  archiveArgs,
  refuseArchiveFlagsAlone,
  startArchiveForStart,
  type ArchiveStartFlags,
} from "../archive-options.js";
import { PASSWORD_ENV, forgetSecretEnv } from "../password.js";
import { TOKEN_ENV } from "../../replication/auth.js";
import {
  addReplicationStartOptions,
  replicationArgs,
  startReplicationForStart,
  type ReplicationStartFlags,
} from "../replication-options.js";
import {
  addWorktreeStartOptions,
  worktreeArgs,
  worktreeOptionsOf,
  type WorktreeStartFlags,
} from "../worktree-options.js";

export function replayLine(r: RecoverySummary): string {
  const p = r.replay;
  return (
    `replay: ${p.found} uncommitted intent(s) found, ${p.replayed} replayed, ${p.skipped_idempotent} skipped (already executed), ` +
    `${p.stale} stale, ${p.failed} failed; ${r.reattached} agent(s) re-attached, ` +
    (r.lost_agents_requeued ? `${r.lost_agents_requeued} lost agent(s) re-queued, ` : "") +
    `${r.completions_collected} completion record(s) collected, ` +
    `${r.orphaned_claims_requeued} orphaned claim(s) re-queued, ${r.adopted} task(s) adopted` +
    (r.torn_tails_repaired ? `, ${r.torn_tails_repaired} torn WAL tail(s) repaired` : "")
  );
}

/** What was appended to `file` after its first `offset` bytes: one child's output in a shared log. */
async function readAfter(file: string, offset: number): Promise<string> {
  const handle = await open(file, "r").catch(() => undefined);
  if (!handle) return "";
  try {
    const { size } = await handle.stat();
    const buf = Buffer.alloc(Math.max(0, size - offset));
    await handle.read(buf, 0, buf.length, offset);
    return buf.toString("utf8");
  } finally {
    await handle.close();
  }
}

async function waitForDetached(
  ws: Workspace,
  childPid: number,
  exited: () => number | null | undefined,
  logFile: string,
  logOffset: number,
) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const s = await readStatusFile(ws);
    if (s && s.pid === childPid && (s.state === "running" || s.state === "draining" || s.state === "stopped"))
      return s;
    const code = exited();
    if (code !== undefined) {
      // The log is appended to by every detached run: only this child's lines explain its exit.
      const lines = (await readAfter(logFile, logOffset)).trim().split("\n");
      // Its error line says why, whatever the failure; a stack trace's last lines say only where.
      const errorLine = [...lines].reverse().find((l) => l.startsWith("bernstein: "));
      const tail = errorLine
        ? errorLine.slice("bernstein: ".length)
        : lines
            .slice(-3)
            .map((l) => l.trim())
            .join(" | ");
      const exit = typeof code === "number" && code > 0 && code < 70 ? (code as 1) : ExitCode.USAGE;
      throw new UserError(
        `start --detach: the orchestrator exited (code ${code}): ${tail || "see " + logFile}`,
        exit,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new UserError(
    `start --detach: the orchestrator did not report running within 120 s; see ${logFile}`,
    ExitCode.CHECK_FAILED,
  );
}

export function registerOrchestrator(program: Command): void {
  registerStart(program);
}

interface StartFlags extends ReplicationStartFlags, WorktreeStartFlags, ArchiveStartFlags {
  untilIdle?: boolean;
  detach?: boolean;
  maxAgents?: number;
  checkpointEvery?: number;
  checkpointInterval?: number;
  retryBackoff?: number;
  poll?: number;
  keyFile?: string;
  verbose?: boolean;
}

function registerStart(program: Command): void {
  addArchiveStartOptions(addWorktreeStartOptions(addReplicationStartOptions(program.command("start"))))
    .description("recover the workspace (checkpoint + WAL replay), then run the backlog with agents")
    .option(
      "--until-idle",
      "return when nothing is open or running (exit 1 if, in this run, a task failed terminally or became unable to run)",
    )
    .option("--detach", "run in the background; return once it is running")
    .option("--max-agents <n>", "agents running at once (default 4)", intOption("--max-agents", 1))
    .option(
      "--checkpoint-every <n>",
      "checkpoint after N decisions (0: off; default 100)",
      intOption("--checkpoint-every"),
    )
    .option(
      "--checkpoint-interval <s>",
      "checkpoint every S seconds (0: off; default 60)",
      secondsOption("--checkpoint-interval", "non-negative"),
    )
    .option(
      "--retry-backoff <ms>",
      "first retry delay in ms, doubling per failure (default 1000)",
      intOption("--retry-backoff"),
    )
    .option("--poll <ms>", "longest pause between scheduling passes (default 250)", intOption("--poll", 1))
    .option(
      "--key-file <file>",
      "audit key file (else $BERNSTEIN_AUDIT_KEY_PATH, $XDG_STATE_HOME, ~/.local/state)",
    )
    .option(
      "--verbose",
      "print every warning (by default a burst of one kind prints its first few and a count)",
    )
    .action(async (opts: StartFlags, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      refuseArchiveFlagsAlone(opts);
      // Orchestrator.open reads it too; here a bad value is refused before --detach starts a process.
      staleAfterFromEnv();
      const ws = await openWorkspace(g.sdd);
      // A follower or a fenced node must not decide: refused before the lock (a follower's
      // `replicate follow` may hold it), the leader and the background process.
      await assertMayLead(ws);
      const file = loadedConfigOf(cmd).file;
      const worktreesFromFile = cmd.getOptionValueSource("worktrees") === "config" && file ? file : undefined;
      if (opts.detach) await startDetached(ws, withoutFileValues(cmd, opts), out, file ?? undefined);
      else
        await startInForeground(ws, opts, g, out, {
          worktreesFromFile: worktreesFromFile && shown(worktreesFromFile),
          secretEnv: [PASSWORD_ENV, TOKEN_ENV, loadedConfigOf(cmd).config.backup?.password_env],
        });
    });
}

/** The configuration file's values that `start --detach` leaves to its background process. */
const LEFT_TO_THE_FILE = [
  "worktrees",
  "encrypt",
  "passwordFile",
  "password",
  "passwordEnv",
  "recipient",
  "recipientsFile",
] as const;

/**
 * The flags as typed for these settings: the background process reads the same configuration
 * file, so the file's values stay the file's there. Passed on as flags, a refusal would name a
 * flag never typed (`--worktrees`), and the file's recipients and its `encrypt` would be two typed
 * keys, which contradict each other.
 */
function withoutFileValues(cmd: Command, opts: StartFlags): StartFlags {
  const typed = { ...opts };
  for (const attr of LEFT_TO_THE_FILE) if (cmd.getOptionValueSource(attr) === "config") delete typed[attr];
  return typed;
}

/** `start --detach`: the same `start` in a background process; returns once it reports running. */
async function startDetached(
  ws: Workspace,
  opts: StartFlags,
  out: Output,
  /** The configuration file this command read, which the background process reads again. */
  configFile: string | undefined,
): Promise<void> {
  const lock = await readLock(ws);
  if (lock.state === "held") {
    throw lockedBy(ws, lock.info);
  }
  await durableMkdir(ws.logsDir);
  const logFile = path.join(ws.logsDir, "orchestrator.log");
  const fd = openSync(logFile, "a");
  const logOffset = fstatSync(fd).size;
  let exitCode: number | null | undefined;
  const child = spawn(process.execPath, [...launcherFlags(), BIN, ...detachedArgs(ws, opts, configFile)], {
    detached: true,
    stdio: ["ignore", fd, fd],
    cwd: ws.projectDir,
    // An archive password given on the command line reaches the child by its environment, not argv.
    env: launcherEnv(
      opts.password !== undefined && opts.passwordEnv === undefined
        ? { ...process.env, [PASSWORD_ENV]: opts.password }
        : process.env,
    ),
  });
  closeSync(fd);
  const childExited = new Promise<void>((resolve) =>
    child.on("exit", (code) => {
      exitCode = code;
      resolve();
    }),
  );
  child.unref();
  const pid = child.pid!;
  // Until this command returns, the child is its work: Ctrl-C / SIGTERM stops it (SIGTERM drains a
  // running orchestrator as `stop --timeout 0` does) rather than leaving it running unannounced.
  const stopOnInterrupt = cleanupOnInterrupt(`the orchestrator it started (pid ${pid})`, async () => {
    if (exitCode !== undefined) return `the orchestrator it started (pid ${pid}) had already exited`;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      return `the orchestrator it started (pid ${pid}) had already exited`;
    }
    const stopped = await Promise.race([
      childExited.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 30_000)),
    ]);
    return stopped
      ? `stopped the orchestrator it started (pid ${pid})`
      : `the orchestrator it started (pid ${pid}) is still stopping; \`bernstein stop\` waits for it`;
  });
  let s: Awaited<ReturnType<typeof waitForDetached>>;
  try {
    s = await waitForDetached(ws, pid, () => exitCode, logFile, logOffset);
  } finally {
    await stopOnInterrupt.release();
  }
  // The leader's endpoint is recorded before the run reports running: the port 0 chose is there.
  const endpoint = opts.replicationListen ? await readLiveEndpoint(ws) : null;
  const replicationUrl = endpoint?.pid === pid ? endpoint.url : null;
  out.result(
    {
      ok: true,
      detached: true,
      pid,
      run_id: s.run_id,
      replay: s.replay ?? null,
      log: logFile,
      ...(opts.replicationListen && { replication_url: replicationUrl }),
    },
    () =>
      out.line(
        `orchestrator running in the background: pid ${pid}, run ${s.run_id}, log ${shown(logFile)}` +
          (replicationUrl ? `, replication serving at ${replicationUrl}` : ""),
      ),
  );
}

/** The background process's arguments: this invocation's flags, paths made absolute. */
function detachedArgs(ws: Workspace, opts: StartFlags, configFile: string | undefined): string[] {
  // The same configuration file, so that what it set is named as the file's in a refusal.
  const args = ["--sdd", ws.root, ...(configFile ? ["--config", path.resolve(configFile)] : []), "start"];
  if (opts.untilIdle) args.push("--until-idle");
  if (opts.maxAgents !== undefined) args.push("--max-agents", String(opts.maxAgents));
  if (opts.checkpointEvery !== undefined) args.push("--checkpoint-every", String(opts.checkpointEvery));
  if (opts.checkpointInterval !== undefined)
    args.push("--checkpoint-interval", String(opts.checkpointInterval));
  if (opts.retryBackoff !== undefined) args.push("--retry-backoff", String(opts.retryBackoff));
  if (opts.poll !== undefined) args.push("--poll", String(opts.poll));
  if (opts.keyFile) args.push("--key-file", path.resolve(opts.keyFile));
  if (opts.verbose) args.push("--verbose");
  args.push(...replicationArgs(opts), ...worktreeArgs(opts), ...archiveArgs(opts));
  return args;
}

async function startInForeground(
  ws: Workspace,
  opts: StartFlags,
  g: GlobalOptions,
  out: Output,
  from: {
    /** The configuration file, when `worktrees: true` came from it (a refusal names it). */
    worktreesFromFile: string | undefined;
    /** The variables secrets may be read from: gone from the environment once read. */
    secretEnv: readonly (string | undefined)[];
  },
): Promise<void> {
  // --replication-listen: the leader endpoint (replication owns this hook). Its commit gate holds
  // every decision until the ack policy is met; a fenced leader refuses to start.
  const leader = await startReplicationForStart(ws, opts, g.quiet);
  const closeLeader = async () => leader?.close();
  // --archive-to: the archiver runs inside this process (its first cycle before the lock is taken).
  const archive = await startArchiveForStart(ws, opts, (l, problem) =>
    problem ? out.warn(l) : out.line(l),
  ).catch(async (err: unknown) => {
    await closeLeader();
    throw err;
  });
  // The leader's token and the archive's password are read: no agent inherits them.
  forgetSecretEnv(from.secretEnv);
  const warnings = new WarningDigest({
    verbose: Boolean(opts.verbose),
    keepAll: g.json,
    print: (l) => out.warn(l),
  });
  // Ctrl-C / SIGTERM: drain like `bernstein stop`, then exit 130/143 (Orchestrator.interrupt).
  // Listening from before the lock is taken: a signal during recovery (default action: the
  // process dies mid-replay, lock and run left behind) is held until recovery is done and then
  // drains the run before it claims anything. A decision waiting for its replication
  // acknowledgements waits at most a short grace more, else the run ends with it
  // (AckPolicy.interrupt): a drain would wait behind it. A second signal, of either kind, ends
  // the process at once.
  const recovered: { orch?: Orchestrator; signalDuring?: InterruptSignal } = {};
  const stopListening = onFirstInterrupt((signal) => {
    leader?.policy.interrupt(signal);
    if (recovered.orch) recovered.orch.interrupt(signal).catch(() => {});
    else recovered.signalDuring = signal;
  });
  const orch = await Orchestrator.open(ws, {
    replication: leader,
    archive,
    maxAgents: opts.maxAgents,
    untilIdle: Boolean(opts.untilIdle),
    checkpointEvery: opts.checkpointEvery,
    checkpointIntervalS: opts.checkpointInterval,
    retryBackoffMs: opts.retryBackoff,
    pollMs: opts.poll,
    auditKeyFile: opts.keyFile,
    worktrees: worktreeOptionsOf(opts, from.worktreesFromFile),
    log: (l) => out.line(l),
    warn: (l, group) => warnings.warn(l, group),
    flushWarnings: () => warnings.flush(),
  }).catch(async (err: unknown) => {
    stopListening();
    warnings.flush();
    archive?.stop();
    await closeLeader();
    throw err;
  });
  recovered.orch = orch;
  if (recovered.signalDuring) await orch.interrupt(recovered.signalDuring);
  warnings.flush();
  out.line(`run ${orch.runId}: ${replayLine(orch.recovery)}`);
  const result = await orch.run().finally(async () => {
    warnings.flush();
    await closeLeader();
  });
  stopListening();
  reportRun(out, orch, result, warnings.all);
}

function reportRun(out: Output, orch: Orchestrator, result: RunResult, warnings: string[]): void {
  out.result(
    {
      ok: result.exit_code === 0,
      options: orch.effectiveOptions,
      recovery: orch.recovery,
      ...result,
      warnings,
    },
    () => {
      const r = result.this_run;
      const ended = result.interrupted_by ? `interrupted by ${result.interrupted_by}` : result.reason;
      out.line(
        `run ${result.run_id} ${ended}: this run ${r.done} done, ${r.failed.length} failed` +
          (r.blocked.length ? `, ${r.blocked.length} newly blocked` : "") +
          `; all tasks: ${renderTaskCounts(result.counts)}; ${result.decisions} decisions`,
      );
    },
  );
  if (result.interrupted_by) {
    out.failed(result.exit_code, `start: interrupted by ${result.interrupted_by}`);
  } else if (result.exit_code !== 0) {
    const r = result.this_run;
    out.failed(
      result.exit_code,
      `start: this run ${r.failed.length} task(s) failed terminally` +
        (r.blocked.length ? `, ${r.blocked.length} became unable to run` : ""),
    );
  }
}
