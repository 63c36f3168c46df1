/** `stop` and `status`: they read the workspace's files and need none of the engine `start` runs. */
import type { Command } from "../../vendor/commander.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { openWorkspace } from "../../workspace/layout.js";
import { cleanupOnInterrupt } from "../../workspace/interrupt.js";
import { readLock } from "../../workspace/lock.js";
import {
  awaitOrchestratorStop,
  isOrchestratorHolder,
  otherHolder,
  writeStopRequest,
} from "../../orchestrator/control.js";
import { collectStatus, renderStatus, statusExitCode } from "../../orchestrator/status.js";
import { secondsOption } from "../number-option.js";

export function registerStopAndStatus(program: Command): void {
  registerStop(program);
  program
    .command("status")
    .description(
      "task counts per state, running agents, cost, WAL position, last checkpoint (exit 9 if the WAL it reads is broken or rolled back)",
    )
    .action(async (_opts, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const s = await collectStatus(ws);
      const code = statusExitCode(s);
      out.result({ ok: code === ExitCode.OK, ...s }, () => renderStatus(s, (l) => out.line(l)));
      // The state is printed either way; the exit code says whether `start` would refuse it.
      const first = s.integrity[0];
      if (first)
        out.failed(
          code,
          `status: WAL integrity: ${first.run_id ? `run ${first.run_id}: ` : ""}${first.message}`,
        );
    });
}

/** What Ctrl-C of `stop` leaves: the request it wrote, which the orchestrator goes on with. */
function stopGoesOn(pid: number): string {
  return `the stop request stays in force: orchestrator pid ${pid} goes on stopping (a stop cannot be withdrawn); \`bernstein status\` shows when it has stopped`;
}

function registerStop(program: Command): void {
  program
    .command("stop")
    .description("drain the running orchestrator: stop claiming, wait for agents, checkpoint, close the WAL")
    .option(
      "--timeout <s>",
      "seconds to wait for running agents (default 60; 0: do not wait); they keep running after",
      secondsOption("--timeout", "non-negative"),
    )
    .option("--force", "kill the agents' process groups and re-queue their tasks (task_interrupted)")
    .action(async (opts: { timeout?: number; force?: boolean }, cmd: Command) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      const ws = await openWorkspace(g.sdd);
      const lock = await readLock(ws);
      // Only an orchestrator reads a stop request: anything else holding the lock would leave it
      // behind, unread, for the next start, while this command waited for nothing.
      if (lock.state === "held" && !isOrchestratorHolder(lock.info))
        throw new UserError(
          `stop: no orchestrator runs in ${ws.shownRoot}: it is held by ${otherHolder(lock.info)}; stop that process where it runs (Ctrl-C, or kill ${lock.info.pid} on its host)`,
          ExitCode.LOCKED,
          { holder: lock.info },
        );
      if (lock.state !== "held") {
        out.result({ ok: true, running: false, stopped: false }, () =>
          out.line("orchestrator is not running"),
        );
        return;
      }
      const timeoutS = opts.timeout ?? 60;
      // The orchestrator takes the request up on its own and a drain it began cannot be called
      // off: Ctrl-C ends only this wait, and says that the stop goes on without it. Listening
      // from before the request is written: the orchestrator may be draining before the write
      // returns here, and a signal then must not find the process without its handler.
      let written: Promise<boolean> = Promise.resolve(false);
      const wait = cleanupOnInterrupt("the wait", async () =>
        (await written.catch(() => false)) ? stopGoesOn(lock.info.pid) : "no stop request was written",
      );
      written = writeStopRequest(ws, {
        mode: opts.force ? "force" : "drain",
        timeout_s: timeoutS,
        requested_at: new Date().toISOString(),
        requested_by_pid: process.pid,
        holder: lock.info,
      }).then(() => true);
      await written;
      const waitS = timeoutS + 60;
      const end = await awaitOrchestratorStop(ws, lock.info, waitS * 1000);
      await wait.release();
      const run = end.run_id ? ` (run ${end.run_id})` : "";
      if (end.ended === "died")
        throw new UserError(
          `stop: orchestrator pid ${lock.info.pid}${run} died before it finished stopping (its run was not closed); the next \`bernstein start\` recovers it`,
          ExitCode.CHECK_FAILED,
          { running: false, stopped: false, died: true, pid: lock.info.pid, run_id: end.run_id },
        );
      if (end.ended === "waiting")
        throw new UserError(
          `stop: orchestrator pid ${lock.info.pid} did not stop within ${waitS}s`,
          ExitCode.CHECK_FAILED,
        );
      const how = end.how;
      // The orchestrator ended (a drain under way, --until-idle) before it read the force request:
      // the agents it left running were not killed, and their tasks stay claimed.
      if (opts.force && how && how.reason !== "forced" && how.left_running > 0)
        throw new UserError(
          `stop: orchestrator pid ${lock.info.pid}${run} stopped before it read the force request (${how.reason === "stopped" ? "its drain ended first" : `it ended: ${how.reason}`}) and left ${how.left_running} agent(s) running, not killed: their tasks stay claimed and the next \`bernstein start\` re-attaches them (\`bernstein stop --force\` then kills them)`,
          ExitCode.CHECK_FAILED,
          {
            running: false,
            stopped: true,
            forced: false,
            pid: lock.info.pid,
            run_id: end.run_id,
            ended: how.reason,
            left_running: how.left_running,
          },
        );
      out.result(
        {
          ok: true,
          running: false,
          stopped: true,
          pid: lock.info.pid,
          run_id: end.run_id,
          mode: opts.force ? "force" : "drain",
          ended: how?.reason ?? null,
          left_running: how?.left_running ?? null,
        },
        () => out.line(`stopped orchestrator pid ${lock.info.pid}${run}`),
      );
    });
}
