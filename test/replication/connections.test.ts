/**
 * The replication endpoint against clients that never finish: raw sockets (node:net) on
 * 127.0.0.x that send nothing, half a request's headers, a body trickled after its 401, or stay
 * idle after an answer are all closed by the server; connections beyond the caps (in all, per
 * client address) are closed at once; an authenticated follower's long-polls still work. The
 * timeouts are set small; the tests wait for the closes (bounded), never for a time.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { ReplicationLeader } from "../../src/replication/leader.js";
import type { ConnectionLimits } from "../../src/replication/limits.js";
import { verifyWal } from "../../src/wal/reader.js";
import { initWorkspace, type Workspace } from "../../src/workspace/layout.js";
import { runCli, CLI_ARGV, cliEnv } from "../helpers.js";
import {
  eventually,
  leaderWorkspace,
  makeToken,
  Proc,
  scratchWithProcs,
  startFollower,
} from "./support/procs.js";

const RUN = "run-connections";
/** How long a socket the server must close may stay open before the test fails (a bound, not a measure). */
const CLOSE_BOUND_MS = 20_000;

/** A raw client connection: what it received, and whether the server closed it. */
class Raw {
  data = "";
  open = true;
  private trickle: NodeJS.Timeout | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding("utf8").on("data", (d: string) => (this.data += d));
    socket.on("error", () => {}); // a reset is a close too
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.open = false;
        clearInterval(this.trickle);
        resolve();
      }),
    );
  }

  /** Connects from `localAddress` (any 127.0.0.0/8 address is this machine). */
  static connect(port: number, localAddress = "127.0.0.1"): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: "127.0.0.1", localAddress });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new Raw(socket));
      });
    });
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Writes one byte every 20 ms until the connection closes. */
  trickleBytes(): void {
    this.trickle = setInterval(() => this.socket.write("a"), 20);
  }

  /** The status code of the first answer, once its headers are in. */
  async answer(what: string): Promise<{ status: number; head: string }> {
    await eventually(`${what}: an answer`, async () => this.data.includes("\r\n\r\n") || !this.open);
    const head = this.data.slice(0, this.data.indexOf("\r\n\r\n"));
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
    assert.ok(status, `${what}: no answer before the connection closed (${JSON.stringify(this.data)})`);
    return { status, head };
  }

  /** Resolves once the server closed the connection; fails if it is still open after the bound. */
  async closedByServer(what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: still open after ${CLOSE_BOUND_MS / 1000} s`)),
        CLOSE_BOUND_MS,
      );
    });
    try {
      await Promise.race([this.closed, bound]);
    } finally {
      clearTimeout(timer);
    }
  }

  destroy(): void {
    clearInterval(this.trickle);
    this.socket.destroy();
  }
}

const get = (route: string, token?: string): string =>
  `GET ${route} HTTP/1.1\r\nHost: x\r\n${token ? `Authorization: Bearer ${token}\r\n` : ""}\r\n`;

async function startLeader(
  ws: Workspace,
  token: string,
  limits: Partial<ConnectionLimits>,
): Promise<{ leader: ReplicationLeader; port: number; log: string[] }> {
  const log: string[] = [];
  const leader = await ReplicationLeader.start({
    ws,
    host: "127.0.0.1",
    port: 0,
    token,
    policy: "LEADER_ONLY",
    followers: [],
    ackTimeoutMs: 5000,
    onAckTimeout: "stop",
    log: (line) => log.push(line),
    limits,
  });
  return { leader, port: Number(new URL(leader.url).port), log };
}

test(
  "unfinished headers, a body trickled after its 401, and idle connections are closed; a long-poll outlives the request timeout",
  { timeout: 90_000 },
  async (t) => {
    const { dir } = await scratchWithProcs(t, "bernstein-repl-conn-");
    const ws = await leaderWorkspace(path.join(dir, "L", ".sdd"), 3, RUN);
    const { token } = await makeToken(dir);
    const { leader, port } = await startLeader(ws, token, {
      headerTimeoutMs: 300,
      requestTimeoutMs: 600,
      // Long enough that the next request on a kept-alive connection never races its closing.
      keepAliveTimeoutMs: 2000,
    });
    const sockets: Raw[] = [];
    t.after(async () => {
      for (const s of sockets) s.destroy();
      await leader.close();
    });
    const connect = async (): Promise<Raw> => {
      const s = await Raw.connect(port);
      sockets.push(s);
      return s;
    };

    const silent = await connect();
    const halfHeaders = await connect();
    halfHeaders.send("GET /status HTTP/1.1\r\nHost: x\r\n");
    const trickledHeaders = await connect();
    trickledHeaders.send("GET /status HTTP/1.1\r\n");
    trickledHeaders.trickleBytes();
    // A slow-body attack: a huge Content-Length, the body trickled a byte at a time after the 401.
    const trickledBody = await connect();
    trickledBody.send(
      "POST /ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
    );
    trickledBody.trickleBytes();
    const wrongToken = await connect();
    wrongToken.send(get("/status", "x".repeat(48)));
    const idleAfterAnswer = await connect();
    idleAfterAnswer.send(get("/status", token));

    await Promise.all([
      silent.closedByServer("a connection that sends nothing"),
      halfHeaders.closedByServer("headers that never finish"),
      trickledHeaders.closedByServer("headers trickled a byte at a time"),
      trickledBody.closedByServer("a POST body trickled after its 401"),
      wrongToken.closedByServer("a request with a wrong token"),
      idleAfterAnswer.closedByServer("an idle kept-alive connection"),
    ]);
    for (const [s, what] of [
      [trickledBody, "trickled body"],
      [wrongToken, "wrong token"],
    ] as const) {
      const a = await s.answer(what);
      assert.equal(a.status, 401, what);
      assert.match(a.head, /\r\nconnection: close/i, `${what}: the 401 closes the connection`);
    }
    assert.equal((await idleAfterAnswer.answer("authenticated status")).status, 200);

    // An authenticated long-poll waits longer than the request timeout for its answer, and its
    // connection serves the next request.
    const poll = await connect();
    poll.send(get(`/wal/${RUN}?from_seq=3&wait_ms=1500`, token));
    const answered = await poll.answer("a long-poll");
    assert.equal(answered.status, 200);
    assert.match(answered.head, /\r\nx-bernstein-tail-seq: 2\r\n/i);
    assert.doesNotMatch(answered.head, /\r\nconnection: close/i);
    poll.data = "";
    poll.send(get(`/wal/${RUN}?from_seq=0`, token));
    assert.equal((await poll.answer("the next request on the same connection")).status, 200);
    await poll.closedByServer("the long-poll's connection once idle");
  },
);

test(
  "connections beyond the per-address cap and beyond the total cap are closed at once; freed slots serve again",
  { timeout: 60_000 },
  async (t) => {
    const { dir } = await scratchWithProcs(t, "bernstein-repl-cap-");
    const ws = await leaderWorkspace(path.join(dir, "L", ".sdd"), 1, RUN);
    const { token } = await makeToken(dir);
    // Long timeouts: the connections that hold the slots stay open while the test looks.
    const { leader, port, log } = await startLeader(ws, token, {
      headerTimeoutMs: 120_000,
      requestTimeoutMs: 120_000,
      maxConnections: 4,
      maxConnectionsPerAddress: 2,
    });
    const sockets: Raw[] = [];
    t.after(async () => {
      for (const s of sockets) s.destroy();
      await leader.close();
    });
    const connect = async (from: string): Promise<Raw> => {
      const s = await Raw.connect(port, from);
      sockets.push(s);
      return s;
    };
    /** An authenticated status request from `from` on a new connection: its status, or 0 when closed unanswered. */
    // The server closes it (connection: close), so it no longer counts it once this returns.
    const statusFrom = async (from: string): Promise<number> => {
      const s = await connect(from);
      s.send(get("/status", token).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
      await s.closedByServer(`a status request from ${from}`);
      return s.data.includes("\r\n\r\n") ? (await s.answer("status")).status : 0;
    };

    // Two idle connections fill 127.0.0.2's share (accepted in order: they connected first).
    const held = [await connect("127.0.0.2"), await connect("127.0.0.2")];
    const third = await connect("127.0.0.2");
    third.send(get("/status", token));
    await third.closedByServer("a third connection from 127.0.0.2");
    assert.equal(third.data, "", "refused before any answer, token or not");
    assert.ok(
      held.every((s) => s.open),
      "the connections within the cap stay open",
    );
    // Another address is not affected (the server may still be counting the refused one: ask again).
    await eventually(
      "a request from 127.0.0.5 is served",
      async () => (await statusFrom("127.0.0.5")) === 200,
    );

    // Two more idle connections from other addresses: 4 open, the total cap.
    held.push(await connect("127.0.0.3"), await connect("127.0.0.4"));
    assert.equal(await statusFrom("127.0.0.5"), 0, "a fifth connection is closed unanswered");
    assert.ok(held.every((s) => s.open));
    assert.ok(
      log.some((l) => /^replication: refused \d+ connection\(s\)/.test(l)),
      `a log line says why: ${log.join(" | ")}`,
    );

    for (const s of held) s.destroy();
    await eventually("freed slots serve again", async () => (await statusFrom("127.0.0.5")) === 200);
  },
);

test(
  "start --replication-listen with small bounds: a follower long-polls and replicates; stuck connections to the orchestrator and to the follower's listener are closed",
  { timeout: 120_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-conn-start-");
    const sdd = (n: string): string => path.join(dir, n, ".sdd");
    await initWorkspace(sdd("L"));
    const { file: tokenFile, token } = await makeToken(dir);
    const bounds = ["--header-timeout", "300", "--request-timeout", "600", "--keepalive-timeout", "300"];

    const bad = await runCli(
      ["--sdd", sdd("L"), "start", "--replication-listen", "127.0.0.1:0", "--token-file", tokenFile].concat([
        "--header-timeout",
        "700",
        "--request-timeout",
        "600",
      ]),
    );
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(
      bad.stderr,
      "bernstein: --request-timeout 600 is shorter than --header-timeout 700: a request's time includes its headers\n",
    );
    const zero = await runCli([
      "--sdd",
      sdd("L"),
      "start",
      "--replication-listen",
      "127.0.0.1:0",
      "--max-connections",
      "0",
    ]);
    assert.equal(zero.code, 2, zero.stderr);
    assert.match(zero.stderr, /--max-connections 0: expected an integer of at least 1/);

    const leader = new Proc(
      spawn(
        process.execPath,
        [...CLI_ARGV, "--sdd", sdd("L"), "start", "--poll", "50", "--replication-listen", "127.0.0.1:0"]
          .concat(["--token-file", tokenFile, "--max-connections-per-ip", "8"])
          .concat(bounds),
        { stdio: ["ignore", "pipe", "pipe"], cwd: dir, env: cliEnv() },
      ),
      "leader",
    );
    procs.push(leader);
    const url = await leader.waitFor(
      "the leader endpoint",
      () => /replication: serving at (\S+)/.exec(leader.stderr)?.[1],
    );
    const port = Number(new URL(url).port);

    // A follower whose long-polls (--wait-ms 1000) outlast the leader's request timeout (600 ms).
    const follower = await startFollower({
      leader: url,
      region: "a",
      sdd: sdd("A"),
      tokenFile,
      extra: bounds,
    });
    procs.push(follower.proc);

    const sockets: Raw[] = [];
    t.after(() => sockets.forEach((s) => s.destroy()));
    const open = async (p: number, send?: string): Promise<Raw> => {
      const s = await Raw.connect(p, "127.0.0.2");
      sockets.push(s);
      if (send !== undefined) s.send(send);
      return s;
    };
    const attacks = [
      [await open(port), "silent connection to the orchestrator"],
      [await open(port, "GET /status HTTP/1.1\r\nHost: x\r\n"), "half headers to the orchestrator"],
      [
        await open(port, "POST /ack HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"),
        "trickled body",
      ],
      [
        await open(Number(new URL(follower.url).port), "GET /status HTTP/1.1\r\n"),
        "half headers to the follower",
      ],
    ] as const;
    attacks[2][0].trickleBytes();
    await Promise.all(attacks.map(([s, what]) => s.closedByServer(what)));

    // The follower keeps following through it all: it holds the leader's whole WAL and says so.
    const status = async (): Promise<{ wal: { runs: Array<{ run_id: string; last_seq: number }> } }> => {
      const res = await fetch(`${url}/status`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      return (await res.json()) as { wal: { runs: Array<{ run_id: string; last_seq: number }> } };
    };
    const runs = (await status()).wal.runs;
    assert.ok(runs.length > 0, "the orchestrator wrote its run");
    for (const run of runs) {
      await eventually(`the follower holds ${run.run_id} up to seq ${run.last_seq}`, async () => {
        const v = await verifyWal(
          path.join(sdd("A"), "runtime", "wal", `${run.run_id}.wal.jsonl`),
          run.run_id,
        ).catch(() => undefined);
        return v !== undefined && v.ok && v.last_seq >= run.last_seq;
      });
    }
    await eventually("the follower reports FOLLOWING", async () => {
      const res = await fetch(`${follower.url}/status`, { headers: { authorization: `Bearer ${token}` } });
      return ((await res.json()) as { state?: string }).state === "FOLLOWING";
    });
  },
);
