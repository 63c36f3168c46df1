/** Real processes for the replication tests: the decider (leader), followers, and HTTP helpers. */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import net from "node:net";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { WalWriter } from "../../../src/wal/writer.js";
import { initWorkspace, type Workspace } from "../../../src/workspace/layout.js";
import { REPO_ROOT, scratchDir, CLI_ARGV, cliEnv } from "../../helpers.js";

// Child processes write audit events (degrade, promotion): keep the audit key out of $HOME, in a
// folder of this test process that goes when it exits.
if (process.env.BERNSTEIN_AUDIT_KEY_PATH === undefined) {
  const keyDir = path.join(os.tmpdir(), `bernstein-repl-test-${process.pid}`);
  process.env.BERNSTEIN_AUDIT_KEY_PATH = path.join(keyDir, "audit.key");
  process.on("exit", () => rmSync(keyDir, { recursive: true, force: true }));
}

export const DECIDER = path.join(REPO_ROOT, "dist", "test", "replication", "support", "decider.js");

export async function makeToken(dir: string, name = "token"): Promise<{ file: string; token: string }> {
  const token = randomBytes(24).toString("hex");
  const file = path.join(dir, name);
  await writeFile(file, token + "\n", { mode: 0o600 });
  return { file, token };
}

export class Proc {
  readonly events: Array<Record<string, unknown>> = [];
  stdout = "";
  stderr = "";
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private listeners = new Set<() => void>();

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
      let nl: number;
      while ((nl = this.stdout.indexOf("\n")) >= 0) {
        const line = this.stdout.slice(0, nl);
        this.stdout = this.stdout.slice(nl + 1);
        try {
          this.events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a human line
        }
      }
      this.wake();
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
      this.wake();
    });
    this.exited = new Promise((resolve) =>
      child.on("exit", (code, signal) => (this.wake(), resolve({ code, signal }))),
    );
  }

  private wake(): void {
    for (const l of [...this.listeners]) l();
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Waits until `pred` holds (re-checked on output and every 50 ms). */
  async waitFor<T>(what: string, pred: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: timed out waiting for ${what}\nstderr:\n${this.stderr.slice(-3000)}`);
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.listeners.delete(done);
          resolve();
        };
        const t = setTimeout(done, 50);
        this.listeners.add(done);
      });
    }
  }

  acks(): number[] {
    return this.events.filter((e) => typeof e.ack === "number").map((e) => e.ack as number);
  }

  kill(sig: NodeJS.Signals = "SIGKILL"): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }
}

export interface DeciderArgs {
  sdd: string;
  tokenFile: string;
  listen?: string;
  policy?: string;
  followers?: string[];
  ackTimeout?: number;
  onAckTimeout?: string;
  rate?: number;
  count?: number;
  runId?: string;
  probeInterval?: number;
  maxLagEntries?: number;
  maxRetries?: number;
  /** Decisions start once this file exists. */
  startGate?: string;
}

export async function startDecider(args: DeciderArgs, name = "leader"): Promise<{ proc: Proc; url: string }> {
  const child = spawn(process.execPath, [DECIDER, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = new Proc(child, name);
  const ready = await proc.waitFor("ready", () => proc.events.find((e) => e.ready));
  return { proc, url: ready.url as string };
}

/** `bernstein <args>` as a long-running process; resolves once its first JSON document is out. */
export async function startCli(
  args: string[],
  name: string,
  onSpawn?: (proc: Proc) => void,
): Promise<{ proc: Proc; doc: Record<string, unknown> }> {
  const child = spawn(process.execPath, [...CLI_ARGV, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: cliEnv(),
  });
  const proc = new Proc(child, name);
  onSpawn?.(proc);
  let all = "";
  child.stdout!.on("data", (d: string) => (all += d));
  // A follower's first document comes after its bootstrap (which may wait for its leader): on a
  // loaded machine that takes longer than the default wait.
  const doc = await proc.waitFor(
    `${name} to start`,
    () => {
      try {
        return JSON.parse(all) as Record<string, unknown>;
      } catch {
        if (proc.child.exitCode !== null)
          throw new Error(`${name} exited ${proc.child.exitCode}: ${proc.stderr}`);
        return undefined;
      }
    },
    90_000,
  );
  return { proc, doc };
}

/**
 * `bernstein start --replication-listen 127.0.0.1:0` with followers `a` and `b` expected at the
 * given URLs; resolves with the URL the endpoint reports once it serves. The caller registers the
 * Proc for cleanup.
 */
export async function startReplicatedOrchestrator(o: {
  sdd: string;
  tokenFile: string;
  followers: { a: string; b: string };
  ackPolicy: string;
  maxAgents: number;
  ackTimeoutMs: number;
  cwd: string;
  env: Record<string, string | undefined>;
  onSpawn?: (proc: Proc) => void;
}): Promise<{ proc: Proc; url: string }> {
  const child = spawn(
    process.execPath,
    [
      ...CLI_ARGV,
      "--sdd",
      o.sdd,
      "start",
      "--poll",
      "50",
      "--max-agents",
      String(o.maxAgents),
      "--replication-listen",
      "127.0.0.1:0",
      "--token-file",
      o.tokenFile,
      "--ack-policy",
      o.ackPolicy,
      "--follower",
      `a=${o.followers.a}`,
      "--follower",
      `b=${o.followers.b}`,
      "--ack-timeout",
      String(o.ackTimeoutMs),
      "--probe-interval",
      "200",
    ],
    { stdio: ["ignore", "pipe", "pipe"], cwd: o.cwd, env: cliEnv(o.env) },
  );
  const proc = new Proc(child, "leader");
  o.onSpawn?.(proc);
  const serving = await proc.waitFor(
    "the leader endpoint",
    () => /replication: serving at (\S+) /.exec(proc.stderr) ?? undefined,
  );
  return { proc, url: serving[1] };
}

export async function startFollower(o: {
  leader: string;
  region: string;
  sdd: string;
  tokenFile: string;
  extra?: string[];
  /** Called with the process as soon as it is spawned, before it reports its URL. */
  onSpawn?: (proc: Proc) => void;
}): Promise<{ proc: Proc; url: string }> {
  const extra = o.extra ?? [];
  // Defaults that `extra` may give otherwise (an option given twice is a usage error).
  const defaults = [
    ["--retry-ms", "100"],
    ["--wait-ms", "1000"],
  ].filter(([flag]) => !extra.includes(flag!));
  const { proc, doc } = await startCli(
    [
      "--sdd",
      o.sdd,
      "--json",
      "replicate",
      "follow",
      "--leader",
      o.leader,
      "--follower-name",
      o.region,
      "--token-file",
      o.tokenFile,
      "--listen",
      "127.0.0.1:0",
      ...defaults.flat(),
      ...extra,
    ],
    `follower ${o.region}`,
    o.onSpawn,
  );
  return { proc, url: doc.url as string };
}

export async function getJson(url: string, token: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

/** Polls `fn` until it returns a truthy value. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The port of an `http://host:port` URL a process reported. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}

export interface Relay {
  /** `http://127.0.0.1:<port>` of the relay. */
  readonly url: string;
  /** From now on connections go to this port of 127.0.0.1. */
  to(port: number): void;
}

/**
 * A TCP relay this test process listens on (port 0, held until the test ends): the address a peer
 * must be given before the server behind it exists, as an operator names a host before starting it
 * (a follower's URL on its leader, the URL a promotion announces). Every server still binds port 0
 * itself and reports it; `to()` points the relay at it. Until then each connection is reset, as a
 * port nobody listens on refuses it. Bytes pass unchanged both ways, so a stopped server behind the
 * relay accepts and never answers, exactly as it would directly.
 */
export async function relay(t: TestContext): Promise<Relay> {
  let target: number | undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    if (target === undefined) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    sockets.add(upstream);
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) s.on("error", closeBoth).on("close", closeBoth);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    to: (p) => void (target = p),
  };
}

/**
 * A scratch folder and a list for the processes a test starts: after the test every process is
 * killed (resumed first, in case the test stopped it) and the folder removed.
 */
export async function scratchWithProcs(
  t: TestContext,
  prefix: string,
): Promise<{ dir: string; procs: Proc[] }> {
  const { dir, cleanup } = await scratchDir(prefix);
  const procs: Proc[] = [];
  t.after(async () => {
    for (const p of procs) p.kill("SIGCONT");
    for (const p of procs) p.kill("SIGKILL");
    await cleanup();
  });
  return { dir, procs };
}

/** The run of the WALs that `leaderWorkspace` writes. */
export const TRANSPORT_RUN = "run-transport";

/** A fresh workspace whose WAL run `runId` holds `entries` committed claims. */
export async function leaderWorkspace(
  sdd: string,
  entries: number,
  runId = TRANSPORT_RUN,
): Promise<Workspace> {
  const { workspace } = await initWorkspace(sdd);
  const w = await WalWriter.open(workspace, runId);
  for (let i = 0; i < entries; i++) {
    await w.append({
      decision_type: "task_claimed",
      inputs: { task_id: `t-${i}`, attempt: 1 },
      committed: true,
    });
  }
  await w.close();
  return workspace;
}

/** `bernstein replicate serve` on a free port of 127.0.0.1. */
export async function serve(
  sdd: string,
  tokenFile: string,
  extra: string[] = [],
): Promise<{ proc: Proc; url: string }> {
  const { proc, doc } = await startCli(
    [
      "--sdd",
      sdd,
      "--json",
      "replicate",
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
      ...extra,
    ],
    "serve",
  );
  return { proc, url: doc.url as string };
}
