/**
 * Requests without the token or with a wrong one are refused; a tampered entry is
 * refused and never reaches a follower's WAL; a follower refuses a leader at an older epoch.
 * Also: the token file must be 0600, and the transport works over TLS.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { Workspace } from "../../src/workspace/layout.js";
import { WalWriter } from "../../src/wal/writer.js";
import { verifyWal } from "../../src/wal/reader.js";
import { adoptEpoch } from "../../src/replication/epoch.js";
import { runCli, spawnCli } from "../helpers.js";
import {
  eventually,
  getJson,
  makeToken,
  portOf,
  type Proc,
  relay,
  startFollower,
  scratchWithProcs,
  serve,
  TRANSPORT_RUN,
  leaderWorkspace,
} from "./support/procs.js";

const RUN = TRANSPORT_RUN;

/** Waits until the follower at `sdd` holds a chain of RUN that verifies up to `lastSeq`. */
async function replicatedUpTo(sdd: string, lastSeq: number): Promise<void> {
  await eventually(`the WAL replicated up to seq ${lastSeq}`, async () => {
    const v = await verifyWal(path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`), RUN).catch(
      () => undefined,
    );
    return v?.last_seq === lastSeq;
  });
}

test(
  "the token is required, compared exactly, and its file must be private",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-auth-");
    const sdd = path.join(dir, "L", ".sdd");
    await leaderWorkspace(sdd, 5);
    const { file: tokenFile, token } = await makeToken(dir);
    const leader = await serve(sdd, tokenFile);
    procs.push(leader.proc);

    for (const route of ["/status", "/metrics", "/wal", `/wal/${RUN}?from_seq=0`, "/snapshot"]) {
      const none = await fetch(leader.url + route);
      assert.equal(none.status, 401, route);
      const wrong = await fetch(leader.url + route, {
        headers: { authorization: `Bearer ${token.slice(0, -1)}x` },
      });
      assert.equal(wrong.status, 401, route);
      const longer = await fetch(leader.url + route, { headers: { authorization: `Bearer ${token}x` } });
      assert.equal(longer.status, 401, route);
    }
    const ack = await fetch(leader.url + "/ack", {
      method: "POST",
      body: JSON.stringify({ region: "x", positions: { [RUN]: 4 } }),
    });
    assert.equal(ack.status, 401);
    const ok = await fetch(`${leader.url}/wal/${RUN}?from_seq=0`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(ok.status, 200);
    assert.equal((await ok.text()).trim().split("\n").length, 5);

    // A follower with the wrong token gets nothing and says why.
    const { file: wrongFile } = await makeToken(dir, "wrong-token");
    const f = await runCli(
      [
        "--sdd",
        path.join(dir, "F", ".sdd"),
        "replicate",
        "follow",
        "--leader",
        leader.url,
        "--follower-name",
        "x",
        "--token-file",
        wrongFile,
      ],
      {
        timeoutMs: 20_000,
      },
    );
    assert.equal(f.code, 8, f.stderr);
    assert.match(f.stderr, /refused the token/);

    // A token file others can read is refused before anything starts.
    await chmod(tokenFile, 0o644);
    const bad = await runCli([
      "--sdd",
      sdd,
      "replicate",
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /readable by others; run `chmod 600/);
  },
);

test(
  "a tampered entry never reaches the follower's WAL; the follower stops and re-bootstraps only when told",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-tamper-");
    const sdd = path.join(dir, "L", ".sdd");
    const ws = await leaderWorkspace(sdd, 20);
    const walFile = ws.walFile(RUN);
    const lines = (await readFile(walFile, "utf8")).split("\n");
    assert.match(lines[15], /"t-15"/);
    lines[15] = lines[15].replace('"t-15"', '"t-99"'); // same length, hash no longer matches
    await writeFile(walFile, lines.join("\n"));
    const { file: tokenFile, token } = await makeToken(dir);
    const leader = await serve(sdd, tokenFile);
    procs.push(leader.proc);

    const fsdd = path.join(dir, "F", ".sdd");
    const f = await startFollower({ leader: leader.url, region: "east", sdd: fsdd, tokenFile });
    procs.push(f.proc);
    const st = await eventually("the integrity error", async () => {
      const s = await getJson(`${f.url}/status`, token);
      return s.state === "STOPPED_INTEGRITY" ? s : undefined;
    });
    assert.match(String(st.integrity_error), /run-transport#15: entry_hash does not match its content/);
    await f.proc.waitFor("the integrity log line", () =>
      /INTEGRITY ERROR, stopped applying|integrity error recorded, not applying/.test(f.proc.stderr),
    );
    const fwal = path.join(fsdd, "runtime", "wal", `${RUN}.wal.jsonl`);
    const v = await verifyWal(fwal, RUN);
    assert.equal(v.ok, true);
    assert.equal(v.last_seq, 14, "the follower holds exactly the entries before the tampered one");
    assert.doesNotMatch(await readFile(fwal, "utf8"), /t-99/);
    // The leader sees the follower's integrity error.
    const ls = await eventually("the leader to see the error", async () => {
      const s = await getJson(`${leader.url}/status`, token);
      const east = (s.followers as Array<{ name: string; integrity_error: string | null }>).find(
        (x) => x.name === "east",
      );
      return east?.integrity_error ? east : undefined;
    });
    assert.match(String(ls.integrity_error), /#15/);

    // Restarted without --rebootstrap it still refuses to apply.
    f.proc.kill("SIGTERM");
    await f.proc.exited;
    const again = await startFollower({ leader: leader.url, region: "east", sdd: fsdd, tokenFile });
    procs.push(again.proc);
    assert.equal((await getJson(`${again.url}/status`, token)).state, "STOPPED_INTEGRITY");
    const ds = await runCli(["--sdd", fsdd, "--json", "dr", "status", "--token-file", tokenFile]);
    assert.match(JSON.parse(ds.stdout).integrity_error, /#15/);
    again.proc.kill("SIGTERM");
    await again.proc.exited;
    assert.equal((await verifyWal(fwal, RUN)).last_seq, 14);
  },
);

test(
  "--rebootstrap keeps the replaced WAL and earlier quarantines in runtime/replication",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-quarantine-");
    await leaderWorkspace(path.join(dir, "L", ".sdd"), 5);
    const { file: tokenFile } = await makeToken(dir);
    const leader = await serve(path.join(dir, "L", ".sdd"), tokenFile);
    procs.push(leader.proc);
    // An old leader's workspace: its own run, and a quarantine from an earlier re-bootstrap.
    const osdd = path.join(dir, "O", ".sdd");
    const old = await leaderWorkspace(osdd, 3, "run-old");
    const oldWal = await readFile(old.walFile("run-old"));
    const earlier = path.join(osdd, "runtime", "replication", "quarantine-20000101T000000Z", "wal");
    await mkdir(earlier, { recursive: true });
    await writeFile(path.join(earlier, "run-older.wal.jsonl"), "older\n");

    const f = await startFollower({
      leader: leader.url,
      region: "o",
      sdd: osdd,
      tokenFile,
      extra: ["--rebootstrap"],
    });
    procs.push(f.proc);
    const [, q] = await f.proc.waitFor(
      "the quarantine line",
      () =>
        /moved the previous WAL to runtime\/replication\/(quarantine-\S+)\/wal/.exec(f.proc.stderr) ??
        undefined,
    );
    const rdir = path.join(osdd, "runtime", "replication");
    assert.deepEqual(await readFile(path.join(rdir, q, "wal", "run-old.wal.jsonl")), oldWal);
    assert.equal(await readFile(path.join(earlier, "run-older.wal.jsonl"), "utf8"), "older\n");
    assert.deepEqual(
      (await readdir(path.join(dir, "O"))).filter((n) => n !== ".sdd"),
      [],
      "no previous tree left beside the workspace",
    );
    await replicatedUpTo(osdd, 4);
  },
);

test("a follower started before its leader waits for it, then bootstraps", { timeout: 60_000 }, async (t) => {
  const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-early-");
  await leaderWorkspace(path.join(dir, "L", ".sdd"), 5);
  const { file: tokenFile } = await makeToken(dir);
  // The leader's address, refusing connections until the leader serves behind it.
  const leaderAddress = await relay(t);
  let spawned: Proc | undefined;
  const starting = startFollower({
    leader: leaderAddress.url,
    region: "a",
    sdd: path.join(dir, "A", ".sdd"),
    tokenFile,
    extra: ["--retry-ms", "200"],
    onSpawn: (p) => procs.push((spawned = p)),
  });
  starting.catch(() => {}); // awaited below, once the leader serves
  // Nobody serves yet: the follower must say so and wait, not end with an internal error.
  await spawned!.waitFor("the follower to retry its first contact", () => {
    if (spawned!.child.exitCode !== null) throw new Error(`the follower exited: ${spawned!.stderr}`);
    return /leader contact failed \(2\): GET \/snapshot: .*retrying/.test(spawned!.stderr);
  });
  const leader = await serve(path.join(dir, "L", ".sdd"), tokenFile);
  procs.push(leader.proc);
  leaderAddress.to(portOf(leader.url));
  const follower = await starting;
  assert.match(follower.proc.stderr, /leader contact failed \(1\): GET \/snapshot: .*retrying/);
  await replicatedUpTo(path.join(dir, "A", ".sdd"), 4);
});

test(
  "SIGTERM during a follower's bootstrap, SIGINT to replicate serve: one line, 143/130, no lock left, the follower bootstraps again",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-signal-");
    const { file: tokenFile } = await makeToken(dir);
    const net = await import("node:net");
    // A leader that takes the snapshot request and never answers it.
    const held: import("node:net").Socket[] = [];
    const silent = net.createServer((s) => void held.push(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    t.after(() => {
      for (const s of held) s.destroy();
      silent.close();
    });
    const sddA = path.join(dir, "A", ".sdd");
    const follow = (leader: string) =>
      spawnCli([
        "--sdd",
        sddA,
        "replicate",
        "follow",
        "--leader",
        leader,
        "--follower-name",
        "a",
        "--token-file",
        tokenFile,
      ]);
    const first = follow(`http://127.0.0.1:${(silent.address() as { port: number }).port}`);
    await eventually("the snapshot request", async () => held.length > 0);
    first.child.kill("SIGTERM");
    const stopped = await first.done;
    assert.equal(stopped.code, 143, stopped.stderr);
    assert.match(
      stopped.stderr,
      /^bernstein: replicate follow: interrupted by SIGTERM; the bootstrap from http:\/\/127\.0\.0\.1:\d+ did not finish; the next replicate follow starts it again\n$/,
    );
    await assert.rejects(readFile(path.join(sddA, "runtime", "bernstein.pid")), { code: "ENOENT" });
    const st = await runCli(["--sdd", sddA, "--json", "dr", "status"]);
    assert.equal((JSON.parse(st.stdout) as { role: string }).role, "follower", st.stdout);

    await leaderWorkspace(path.join(dir, "L", ".sdd"), 3);
    const leader = await serve(path.join(dir, "L", ".sdd"), tokenFile);
    procs.push(leader.proc);
    const second = follow(leader.url);
    await replicatedUpTo(sddA, 2);
    second.child.kill("SIGTERM");
    const r2 = await second.done;
    assert.equal(r2.code, 143, r2.stderr);
    assert.match(r2.stderr, /bootstrapped from http/);
    assert.match(
      r2.stderr,
      /^bernstein: replicate follow: interrupted by SIGTERM; stopped following http\S+\n$/m,
    );
    leader.proc.kill("SIGINT");
    assert.deepEqual(await leader.proc.exited, { code: 130, signal: null });
    assert.match(
      leader.proc.stderr,
      /^bernstein: replicate serve: interrupted by SIGINT; stopped serving http\S+\n$/m,
    );
  },
);

test("a base snapshot cut off mid-way is fetched again", { timeout: 60_000 }, async (t) => {
  const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-cut-");
  const http = await import("node:http");
  let snapshots = 0;
  // In front of the leader: the first /snapshot answer stops after 1,000 bytes (connection reset).
  const proxy = http.createServer((req, res) => {
    const up = http.request(
      leader.url + (req.url ?? "/"),
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (req.url?.startsWith("/snapshot") && ++snapshots === 1) {
          answer.once("data", (d: Buffer) => {
            res.write(d.subarray(0, 1000), () => res.socket?.destroy());
            answer.destroy();
          });
        } else answer.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  t.after(async () => {
    proxy.closeAllConnections();
    await new Promise((r) => proxy.close(r));
  });
  await leaderWorkspace(path.join(dir, "L", ".sdd"), 200);
  const { file: tokenFile } = await makeToken(dir);
  const leader = await serve(path.join(dir, "L", ".sdd"), tokenFile);
  procs.push(leader.proc);
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as { port: number }).port;
  const follower = await startFollower({
    leader: `http://127.0.0.1:${port}`,
    region: "a",
    sdd: path.join(dir, "A", ".sdd"),
    tokenFile,
    extra: ["--retry-ms", "100"],
  });
  procs.push(follower.proc);
  assert.equal(snapshots, 2);
  assert.match(follower.proc.stderr, /base snapshot lost mid-way \(1\): .*retrying/);
  await replicatedUpTo(path.join(dir, "A", ".sdd"), 199);
});

test("a follower refuses a leader at an older epoch", { timeout: 60_000 }, async (t) => {
  const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-epoch-");
  const sdd = path.join(dir, "L", ".sdd");
  const ws = await leaderWorkspace(sdd, 10);
  const { file: tokenFile, token } = await makeToken(dir);
  const leader = await serve(sdd, tokenFile);
  procs.push(leader.proc);
  const fsdd = path.join(dir, "F", ".sdd");
  const f = await startFollower({ leader: leader.url, region: "east", sdd: fsdd, tokenFile });
  procs.push(f.proc);
  await eventually(
    "caught up",
    async () =>
      ((await getJson(`${f.url}/status`, token)).wal as { position: { seq: number } | null }).position
        ?.seq === 9,
  );
  f.proc.kill("SIGTERM");
  await f.proc.exited;

  // Meanwhile a promotion elsewhere moved this follower to epoch 3; the old leader writes on.
  await adoptEpoch(new Workspace(fsdd), 3);
  const w = await WalWriter.open(ws, RUN);
  await w.append({
    decision_type: "task_claimed",
    inputs: { task_id: "t-late", attempt: 1 },
    committed: true,
  });
  await w.close();

  const again = await startFollower({ leader: leader.url, region: "east", sdd: fsdd, tokenFile });
  procs.push(again.proc);
  const s = await eventually("the refusal", async () => {
    const x = await getJson(`${again.url}/status`, token);
    return x.state === "REFUSED_EPOCH" ? x : undefined;
  });
  assert.match(String((s.leader as { last_error: string }).last_error), /epoch 1, older than ours \(3\)/);
  assert.equal((await verifyWal(path.join(fsdd, "runtime", "wal", `${RUN}.wal.jsonl`), RUN)).last_seq, 9);
  // The leader learned of epoch 3 from the follower's requests: it is fenced and says why.
  const ls = await eventually("the leader fenced", async () => {
    const x = await getJson(`${leader.url}/status`, token);
    return x.fenced ? x : undefined;
  });
  assert.match(String(ls.fenced_reason), /superseded by epoch 3/);
});

test("replication over TLS with a self-signed certificate", { timeout: 60_000 }, async (t) => {
  const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-tls-");
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  const sdd = path.join(dir, "L", ".sdd");
  await leaderWorkspace(sdd, 7);
  const { file: tokenFile, token } = await makeToken(dir);
  const leader = await serve(sdd, tokenFile, ["--tls-cert", cert, "--tls-key", key]);
  procs.push(leader.proc);
  assert.match(leader.url, /^https:/);
  await writeFile(path.join(sdd, "backlog", "open", "t-1.md"), "---\nid: t-1\n---\nnot in the WAL\n");
  const fsdd = path.join(dir, "F", ".sdd");
  const f = await startFollower({
    leader: leader.url,
    region: "east",
    sdd: fsdd,
    tokenFile,
    extra: ["--tls-ca", cert],
  });
  procs.push(f.proc);
  await eventually("caught up over TLS", async () => {
    const s = await getJson(`${f.url}/status`, token);
    return (s.wal as { position: { seq: number } | null }).position?.seq === 6;
  });
  assert.equal(
    await readFile(path.join(fsdd, "runtime", "wal", `${RUN}.wal.jsonl`), "utf8"),
    await readFile(path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`), "utf8"),
  );
  // Bootstrapped from the base snapshot: the state that is not in the WAL came too.
  assert.equal(
    await readFile(path.join(fsdd, "backlog", "open", "t-1.md"), "utf8"),
    "---\nid: t-1\n---\nnot in the WAL\n",
  );
  assert.match(await readFile(path.join(fsdd, "runtime", "restored-from.json"), "utf8"), /snapshot/);
});

test(
  "a run id with ../ from the leader stops the follower before anything is written",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-runid-");
    const http = await import("node:http");
    const evil = "../../../../PWNREPL";
    // In front of the leader: its run list gains `evil`, whose lines are the real run's.
    const proxy = http.createServer((req, res) => {
      const url = req.url ?? "/";
      const wanted = url.startsWith(`/wal/${encodeURIComponent(evil)}?`);
      const upUrl = wanted ? url.replace(encodeURIComponent(evil), RUN) : url;
      const up = http.request(leader.url + upUrl, { method: req.method, headers: req.headers }, (answer) => {
        if (url !== "/wal" || answer.statusCode !== 200) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        answer.on("data", (c: Buffer) => chunks.push(c));
        answer.on("end", () => {
          const doc = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
            runs: Array<{ run_id: string }>;
          };
          doc.runs.push({ ...doc.runs[0]!, run_id: evil });
          const body = JSON.stringify(doc);
          const headers = { ...answer.headers, "content-length": String(Buffer.byteLength(body)) };
          delete headers["transfer-encoding"];
          res.writeHead(200, headers);
          res.end(body);
        });
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    t.after(async () => {
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    });
    const sdd = path.join(dir, "f", "a", "b", ".sdd");
    await leaderWorkspace(path.join(dir, "L", ".sdd"), 10);
    const { file: tokenFile } = await makeToken(dir);
    const leader = await serve(path.join(dir, "L", ".sdd"), tokenFile);
    procs.push(leader.proc);
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    const f = await startFollower({ leader: proxyUrl, region: "east", sdd, tokenFile });
    procs.push(f.proc);
    const role = path.join(sdd, "runtime", "replication", "role.json");
    const integrity = await eventually("the integrity error", async () => {
      const r = JSON.parse(await readFile(role, "utf8").catch(() => "{}")) as { integrity_error?: string };
      return r.integrity_error;
    });
    assert.equal(
      integrity,
      `leader ${proxyUrl} lists a WAL run: "${evil}" is not a run id (letters, digits, '.', '_' and '-', at most 200, beginning with a letter or digit)`,
    );
    // Logged just after role.json is written.
    await eventually("the log line", async () =>
      /INTEGRITY ERROR, stopped applying: leader http:\/\/127\.0\.0\.1:\d+ lists a WAL run/.test(
        f.proc.stderr,
      ),
    );
    const names = await readdir(dir, { recursive: true });
    assert.deepEqual(
      names.filter((n) => n.includes("PWNREPL")),
      [],
    );
  },
);
