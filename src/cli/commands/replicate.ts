/**
 * `bernstein replicate serve|follow`: the cross-region WAL replication processes. Both run until
 * SIGINT/SIGTERM (then one line, exit 130/143); the first output (a JSON line with --json) says
 * where they answer.
 */
import type { Command } from "../../vendor/commander.js";
import { Option } from "../../vendor/commander.js";
import { openWorkspace, Workspace } from "../../workspace/layout.js";
import { removeEndpoint, writeEndpoint } from "../../replication/endpoint.js";
import { ReplicationFollower } from "../../replication/follower.js";
import { installSnapshot, storeSnapshot } from "../../replication/snapshot.js";
import {
  type LeaderFlags,
  type TransportFlags,
  addLeaderOptions,
  addTransportOptions,
  caOf,
  limitsOf,
  positiveInt,
  resolveToken,
  startLeaderFromFlags,
  tlsOf,
} from "../replication-options.js";
import { parseListen } from "../../replication/server.js";
import { REGION_NAME, parsePeerUrl } from "../../replication/client.js";
import { addDeprecatedAlias } from "../deprecated-option.js";
import { ExitCode, UserError } from "../../errors/errors.js";
import { Output, globalsOf } from "../output.js";
import { type InterruptSignal, interruptedExitCode, onFirstInterrupt } from "../../workspace/interrupt.js";

/**
 * Listens for SIGINT/SIGTERM from before the work starts (a follower's bootstrap included), so the
 * process stops its own way: the lock released, one line, exit 130/143 as README promises.
 */
function stopOnSignal(): { stop: AbortSignal; stopped: Promise<void>; signal: () => InterruptSignal | null } {
  const ctl = new AbortController();
  let got: InterruptSignal | null = null;
  onFirstInterrupt((sig) => {
    got = sig;
    ctl.abort();
  });
  const stopped = new Promise<void>((resolve) => ctl.signal.addEventListener("abort", () => resolve()));
  return { stop: ctl.signal, stopped, signal: () => got };
}

/** The one line and exit code of a process a signal stopped. */
function reportInterrupted(command: string, signal: InterruptSignal, what: string): void {
  process.stderr.write(`bernstein: ${command}: interrupted by ${signal}; ${what}\n`);
  process.exitCode = interruptedExitCode(signal);
}

export function registerReplicate(program: Command): void {
  const group = program
    .command("replicate")
    .description("cross-region WAL replication: leader endpoint and followers");

  addLeaderOptions(
    group
      .command("serve")
      .description("serve this workspace's WAL and base snapshot to followers (leader endpoint)")
      .requiredOption("--listen <host:port>", "address to listen on (port 0 picks a free one)"),
  ).action(async (flags: LeaderFlags & { listen: string }, cmd: Command) => {
    const g = globalsOf(cmd);
    const out = Output.of(cmd);
    const ws = await openWorkspace(g.sdd);
    const log = (line: string): void => {
      if (!g.quiet) process.stderr.write(line + "\n");
    };
    const sig = stopOnSignal();
    const leader = await startLeaderFromFlags(ws, { flag: "--listen", value: flags.listen }, flags, { log });
    out.result(
      {
        ok: true,
        role: "leader",
        url: leader.url,
        epoch: leader.epoch,
        policy: leader.policy.policy,
        pid: process.pid,
      },
      () =>
        out.line(
          `Serving replication for ${ws.shownRoot} at ${leader.url} (epoch ${leader.epoch}, ack policy ${leader.policy.policy})`,
        ),
    );
    await sig.stopped;
    await leader.close();
    reportInterrupted("replicate serve", sig.signal()!, `stopped serving ${leader.url}`);
  });

  const follow = addTransportOptions(
    group
      .command("follow")
      .description(
        "follow a leader: bootstrap, pull and verify WAL entries, append them durably, acknowledge",
      )
      .requiredOption("--leader <url>", "the leader's replication URL")
      .requiredOption("--follower-name <name>", "this follower's name, as the leader's --follower knows it")
      .option("--listen <host:port>", "serve this follower's own status, metrics and WAL here")
      .option("--batch-size <n>", "entries per pull", positiveInt("--batch-size"), 50)
      .option("--wait-ms <ms>", "long-poll wait when caught up", positiveInt("--wait-ms"), 5000)
      .option("--retry-ms <ms>", "pause after a failed contact", positiveInt("--retry-ms"), 1000)
      .option(
        "--snapshot-interval <s>",
        "refresh the base snapshot this often (0: never)",
        positiveInt("--snapshot-interval"),
        600,
      )
      .addOption(
        new Option(
          "--rebootstrap",
          "discard this follower's replica (kept in quarantine) and bootstrap again",
        ),
      ),
  );
  // The old name: `dr backup --region` is an S3 region (one meaning per flag name).
  addDeprecatedAlias(follow, "--region <name>", "--follower-name").action(
    async (
      flags: TransportFlags & {
        leader: string;
        followerName: string;
        listen?: string;
        batchSize: number;
        waitMs: number;
        retryMs: number;
        snapshotInterval: number;
        rebootstrap?: boolean;
      },
      cmd: Command,
    ) => {
      const g = globalsOf(cmd);
      const out = Output.of(cmd);
      parsePeerUrl(flags.leader, `--leader ${flags.leader}`);
      if (!REGION_NAME.test(flags.followerName))
        throw new UserError(
          `--follower-name ${flags.followerName}: letters, digits, . _ - only`,
          ExitCode.USAGE,
        );
      if (flags.batchSize < 1) throw new UserError("--batch-size must be at least 1", ExitCode.USAGE);
      const token = await resolveToken(flags);
      const ws = new Workspace(g.sdd);
      const log = (line: string): void => {
        if (!g.quiet) process.stderr.write(line + "\n");
      };
      const sig = stopOnSignal();
      const follower = await ReplicationFollower.start({
        ws,
        leaderUrl: flags.leader,
        region: flags.followerName,
        token,
        tokenFile: flags.tokenFile,
        tlsCa: await caOf(flags),
        tls: tlsOf(flags),
        listen: flags.listen ? parseListen(flags.listen) : undefined,
        limits: limitsOf(flags),
        batchSize: flags.batchSize,
        waitMs: flags.waitMs,
        retryMs: flags.retryMs,
        snapshotIntervalMs: flags.snapshotInterval * 1000,
        thresholds: { maxLagEntries: flags.maxLagEntries, maxRetries: flags.unreachableAfter },
        rebootstrap: Boolean(flags.rebootstrap),
        log,
        installSnapshot: (stream, w) => installSnapshot(stream, w, `${flags.leader}/snapshot`),
        storeSnapshot,
        interrupted: sig.stop,
      }).catch((err: unknown) => {
        const signal = sig.signal();
        if (!signal) throw err;
        reportInterrupted(
          "replicate follow",
          signal,
          `the bootstrap from ${flags.leader} did not finish; the next replicate follow starts it again`,
        );
        return null;
      });
      if (!follower) return;
      if (follower.url) {
        await writeEndpoint(ws, {
          pid: process.pid,
          url: follower.url,
          token_file: flags.tokenFile ?? null,
          role: "follower",
          tls_ca: flags.tlsCa ?? null,
        });
      }
      out.result(
        {
          ok: true,
          role: "follower",
          region: flags.followerName,
          url: follower.url,
          leader: flags.leader,
          sdd: ws.root,
          pid: process.pid,
        },
        () =>
          out.line(
            `Following ${flags.leader} as ${flags.followerName} into ${ws.shownRoot}${follower.url ? ` (status at ${follower.url})` : ""}`,
          ),
      );
      await sig.stopped;
      await follower.stop();
      await removeEndpoint(ws);
      reportInterrupted("replicate follow", sig.signal()!, `stopped following ${flags.leader}`);
    },
  );
}
