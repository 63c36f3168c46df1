/**
 * Command-line options shared by `replicate serve` and `start --replication-listen`, and the one
 * function that turns them into a running leader (so the orchestrator's hook stays one line).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Command, Option } from "../vendor/commander.js";
import { addDeprecatedAlias } from "./deprecated-option.js";
import { ExitCode, UserError } from "../errors/errors.js";
import type { Workspace } from "../workspace/layout.js";
import { type OnAckTimeout, parseAckPolicy } from "../replication/ack-policy.js";
import { loadTokenFile, TOKEN_ENV } from "../replication/auth.js";
import { removeEndpoint, writeEndpoint } from "../replication/endpoint.js";
import type { LeaderOptions, ReplicationLeader } from "../replication/leader.js";
import { DEFAULT_LIMITS, type ConnectionLimits } from "../replication/limits.js";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveInt(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min)
      throw new UserError(
        `${name} ${value}: expected ${min === 0 ? "a non-negative integer" : `an integer of at least ${min}`}`,
        ExitCode.USAGE,
      );
    return n;
  };
}

export { positiveInt };

/** Token, TLS and health options shared by serve and follow. */
export function addTransportOptions(cmd: Command): Command {
  cmd
    .option("--token-file <file>", `bearer token file, mode 0600 (or env ${TOKEN_ENV})`)
    .option("--tls-cert <file>", "serve HTTPS with this certificate (PEM)")
    .option("--tls-key <file>", "private key for --tls-cert (PEM)")
    .option("--tls-ca <file>", "trust this CA / self-signed certificate when connecting to peers over https")
    .option(
      "--max-lag-entries <n>",
      "a follower further behind is LAGGING",
      positiveInt("--max-lag-entries"),
      100,
    )
    .option(
      "--unreachable-after <n>",
      "consecutive failed contacts before a peer is UNREACHABLE",
      positiveInt("--unreachable-after"),
      3,
    )
    .option(
      "--header-timeout <ms>",
      "endpoint: a request's headers (and a TLS handshake) must arrive within this",
      positiveInt("--header-timeout", 1),
      DEFAULT_LIMITS.headerTimeoutMs,
    )
    .option(
      "--request-timeout <ms>",
      "endpoint: a whole request, headers and body, must arrive within this (not the answer)",
      positiveInt("--request-timeout", 1),
      DEFAULT_LIMITS.requestTimeoutMs,
    )
    .option(
      "--keepalive-timeout <ms>",
      "endpoint: an idle kept-alive connection is closed after this",
      positiveInt("--keepalive-timeout", 1),
      DEFAULT_LIMITS.keepAliveTimeoutMs,
    )
    .option(
      "--max-connections <n>",
      "endpoint: open connections in all; more are closed at once",
      positiveInt("--max-connections", 1),
      DEFAULT_LIMITS.maxConnections,
    )
    .option(
      "--max-connections-per-ip <n>",
      "endpoint: open connections from one client address",
      positiveInt("--max-connections-per-ip", 1),
      DEFAULT_LIMITS.maxConnectionsPerAddress,
    );
  // The old name: `task add --max-retries` means task retries (one meaning per flag name).
  return addDeprecatedAlias(cmd, "--max-retries <n>", "--unreachable-after");
}

/** The endpoint's connection limits from the flags; the request time includes the header time. */
export function limitsOf(flags: TransportFlags): ConnectionLimits {
  const limits: ConnectionLimits = {
    headerTimeoutMs: flags.headerTimeout ?? DEFAULT_LIMITS.headerTimeoutMs,
    requestTimeoutMs: flags.requestTimeout ?? DEFAULT_LIMITS.requestTimeoutMs,
    keepAliveTimeoutMs: flags.keepaliveTimeout ?? DEFAULT_LIMITS.keepAliveTimeoutMs,
    maxConnections: flags.maxConnections ?? DEFAULT_LIMITS.maxConnections,
    maxConnectionsPerAddress: flags.maxConnectionsPerIp ?? DEFAULT_LIMITS.maxConnectionsPerAddress,
  };
  if (limits.requestTimeoutMs < limits.headerTimeoutMs)
    throw new UserError(
      `--request-timeout ${limits.requestTimeoutMs} is shorter than --header-timeout ${limits.headerTimeoutMs}: a request's time includes its headers`,
      ExitCode.USAGE,
    );
  return limits;
}

/** The leader's options (ack policy and followers). */
export function addLeaderOptions(cmd: Command): Command {
  return addTransportOptions(cmd)
    .addOption(new Option("--ack-policy <policy>", "LEADER_ONLY, QUORUM or ALL").default("LEADER_ONLY"))
    .option(
      "--follower <name[=url]>",
      "a configured follower (repeat); URL of its own endpoint for health probes",
      collect,
      [],
    )
    .option(
      "--ack-timeout <ms>",
      "how long a decision waits for its acknowledgements (and a clean stop for the followers in contact to take its last entry)",
      positiveInt("--ack-timeout"),
      5000,
    )
    .addOption(
      new Option(
        "--on-ack-timeout <action>",
        "stop (make no new decisions) or degrade (continue as LEADER_ONLY, audited)",
      )
        .choices(["stop", "degrade"])
        .default("stop"),
    )
    .option(
      "--probe-interval <ms>",
      "how often followers' endpoints are probed",
      positiveInt("--probe-interval"),
      1000,
    );
}

export interface TransportFlags {
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  maxLagEntries: number;
  unreachableAfter: number;
  /** The endpoint's connection limits (DEFAULT_LIMITS for those not given). */
  headerTimeout?: number;
  requestTimeout?: number;
  keepaliveTimeout?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
}

export interface LeaderFlags extends TransportFlags {
  ackPolicy: string;
  follower: string[];
  ackTimeout: number;
  onAckTimeout: string;
  probeInterval: number;
}

export async function resolveToken(flags: { tokenFile?: string }): Promise<string> {
  if (flags.tokenFile) return loadTokenFile(flags.tokenFile);
  const env = process.env[TOKEN_ENV];
  if (env && env.trim().length >= 16) return env.trim();
  if (env) throw new UserError(`${TOKEN_ENV}: token must be at least 16 characters`, ExitCode.USAGE);
  throw new UserError(
    `replication needs a token: pass --token-file FILE (mode 0600) or set ${TOKEN_ENV}`,
    ExitCode.USAGE,
  );
}

export function tlsOf(flags: TransportFlags): { certFile: string; keyFile: string } | undefined {
  if (!flags.tlsCert && !flags.tlsKey) return undefined;
  if (!flags.tlsCert || !flags.tlsKey)
    throw new UserError("--tls-cert and --tls-key go together", ExitCode.USAGE);
  return { certFile: flags.tlsCert, keyFile: flags.tlsKey };
}

export async function caOf(flags: TransportFlags): Promise<Buffer | undefined> {
  if (!flags.tlsCa) return undefined;
  return readFile(flags.tlsCa).catch(() => {
    throw new UserError(`--tls-ca ${flags.tlsCa}: cannot read`, ExitCode.USAGE);
  });
}

/**
 * Starts the replication leader for `ws` from parsed flags. `start` calls this when
 * `--replication-listen` is given and plugs `leader.commitGate` into its WAL writer. `listen`:
 * the address and the flag that gave it (named when it is malformed).
 */
export async function startLeaderFromFlags(
  ws: Workspace,
  listen: { flag: string; value: string },
  flags: LeaderFlags,
  extra: Pick<LeaderOptions, "log"> & Partial<Pick<LeaderOptions, "audit" | "snapshot">>,
): Promise<ReplicationLeader> {
  // Loaded here, not with the flags: a `start` without --replication-listen does not carry the
  // leader, its server and the snapshot it serves (a backup's whole writing side).
  const [
    { parseListen },
    { ReplicationLeader, parseFollowerSpecs },
    { replicationAuditor },
    { serveSnapshot },
  ] = await Promise.all([
    import("../replication/server.js"),
    import("../replication/leader.js"),
    import("../replication/audit.js"),
    import("../replication/snapshot.js"),
  ]);
  const { host, port } = parseListen(listen.value, listen.flag);
  const token = await resolveToken(flags);
  const leader = await ReplicationLeader.start({
    ws,
    host,
    port,
    token,
    tls: tlsOf(flags),
    tlsCa: await caOf(flags),
    policy: parseAckPolicy(flags.ackPolicy),
    followers: parseFollowerSpecs(flags.follower),
    ackTimeoutMs: flags.ackTimeout,
    onAckTimeout: flags.onAckTimeout as OnAckTimeout,
    thresholds: { maxLagEntries: flags.maxLagEntries, maxRetries: flags.unreachableAfter },
    probeIntervalMs: flags.probeInterval,
    audit: replicationAuditor(ws, { warn: (line) => extra.log(`warning: ${line}`) }),
    snapshot: (res) => serveSnapshot(ws, res),
    limits: limitsOf(flags),
    ...extra,
  });
  await writeEndpoint(ws, {
    pid: process.pid,
    url: leader.url,
    token_file: flags.tokenFile ?? null,
    role: "leader",
    tls_ca: flags.tlsCa ?? null,
  });
  const close = leader.close.bind(leader);
  leader.close = async () => {
    await close();
    await removeEndpoint(ws);
  };
  return leader;
}

/** `start`'s replication options: the leader's plus `--replication-listen`. */
export function addReplicationStartOptions(cmd: Command): Command {
  return addLeaderOptions(
    cmd.option("--replication-listen <host:port>", "also serve WAL replication to followers here"),
  );
}

export interface ReplicationStartFlags extends LeaderFlags {
  replicationListen?: string;
}

/** The replication flags again, for a re-spawned `start` (--detach). */
export function replicationArgs(f: ReplicationStartFlags): string[] {
  if (!f.replicationListen) return [];
  const a = ["--replication-listen", f.replicationListen, "--ack-policy", f.ackPolicy];
  if (f.tokenFile) a.push("--token-file", path.resolve(f.tokenFile));
  if (f.tlsCert) a.push("--tls-cert", path.resolve(f.tlsCert));
  if (f.tlsKey) a.push("--tls-key", path.resolve(f.tlsKey));
  if (f.tlsCa) a.push("--tls-ca", path.resolve(f.tlsCa));
  for (const x of f.follower) a.push("--follower", x);
  a.push(
    "--ack-timeout",
    String(f.ackTimeout),
    "--on-ack-timeout",
    f.onAckTimeout,
    "--probe-interval",
    String(f.probeInterval),
  );
  a.push("--max-lag-entries", String(f.maxLagEntries), "--unreachable-after", String(f.unreachableAfter));
  const l = limitsOf(f);
  a.push("--header-timeout", String(l.headerTimeoutMs), "--request-timeout", String(l.requestTimeoutMs));
  a.push("--keepalive-timeout", String(l.keepAliveTimeoutMs), "--max-connections", String(l.maxConnections));
  a.push("--max-connections-per-ip", String(l.maxConnectionsPerAddress));
  return a;
}

/**
 * `start --replication-listen`: starts the leader (or returns undefined without the flag) and
 * refuses to start a fenced one. The caller passes it as `replication` to Orchestrator.open and
 * closes it when the run ends.
 */
export async function startReplicationForStart(
  ws: Workspace,
  flags: ReplicationStartFlags,
  quiet: boolean,
): Promise<ReplicationLeader | undefined> {
  if (!flags.replicationListen) return undefined;
  const log = (line: string): void => {
    if (!quiet) process.stderr.write(line + "\n");
  };
  const leader = await startLeaderFromFlags(
    ws,
    { flag: "--replication-listen", value: flags.replicationListen },
    flags,
    { log },
  );
  try {
    leader.assertCanDecide();
  } catch (err) {
    await leader.close();
    throw err;
  }
  log(`replication: serving at ${leader.url} (epoch ${leader.epoch}, ack policy ${leader.policy.policy})`);
  return leader;
}
