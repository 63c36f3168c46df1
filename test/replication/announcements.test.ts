/**
 * What peers announce to a node over HTTP cannot damage it: a `POST /fence` (or an epoch header)
 * with an epoch that is not an integer or lies absurdly far ahead is refused and fences nothing;
 * a replayed or reordered `POST /ack` never moves a follower's acknowledged position back.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { EPOCH_HEADER, MAX_EPOCH_JUMP, adoptEpoch, readEpoch } from "../../src/replication/epoch.js";
import { Workspace } from "../../src/workspace/layout.js";
import {
  TRANSPORT_RUN,
  getJson,
  leaderWorkspace,
  makeToken,
  scratchWithProcs,
  serve,
  startFollower,
} from "./support/procs.js";

async function post(
  url: string,
  token: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; error: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, error: String((JSON.parse(text) as { error?: string }).error ?? "") };
}

test(
  "POST /fence and the epoch header refuse a non-integer or absurdly large epoch; nothing is fenced",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-fence-");
    const sdd = path.join(dir, "L", ".sdd");
    await leaderWorkspace(sdd, 5);
    const { file: tokenFile, token } = await makeToken(dir);
    const leader = await serve(sdd, tokenFile);
    procs.push(leader.proc);
    const follower = await startFollower({
      leader: leader.url,
      region: "east",
      sdd: path.join(dir, "F", ".sdd"),
      tokenFile,
    });
    procs.push(follower.proc);

    const bad = [
      "1.5",
      "1e308",
      String(Number.MAX_SAFE_INTEGER),
      String(1 + MAX_EPOCH_JUMP + 1),
      "0",
      "-3",
      '"2"',
    ];
    for (const node of [leader.url, follower.url]) {
      for (const epoch of bad) {
        const r = await post(`${node}/fence`, token, `{"epoch": ${epoch}}`);
        assert.equal(r.status, 400, `${node} POST /fence epoch ${epoch}: ${r.error}`);
        assert.match(r.error, /^fence: epoch /);
      }
      for (const header of ["1.5", "1e308", "9007199254740991", "1002", "abc"]) {
        const r = await post(`${node}/fence`, token, `{"epoch": 1}`, { [EPOCH_HEADER]: header });
        assert.equal(r.status, 400, `${node} ${EPOCH_HEADER}: ${header}`);
        assert.match(r.error, new RegExp(`^${EPOCH_HEADER} `));
      }
    }
    const st = await getJson(`${leader.url}/status`, token);
    assert.equal(st.fenced, false, "no refused announcement fenced the leader");
    assert.equal(st.epoch, 1);
    const onDisk = await readEpoch(new Workspace(sdd));
    assert.equal(onDisk.superseded_by, null, "nothing recorded durably");
    assert.equal((await getJson(`${follower.url}/status`, token)).epoch, 1);
    assert.equal((await readEpoch(new Workspace(path.join(dir, "F", ".sdd")))).epoch, 1);

    // The largest epoch within reach is a real fence: the leader records it and stays fenced.
    const ok = await post(`${leader.url}/fence`, token, JSON.stringify({ epoch: 1 + MAX_EPOCH_JUMP }));
    assert.equal(ok.status, 200, ok.error);
    const fenced = await getJson(`${leader.url}/status`, token);
    assert.equal(fenced.fenced, true);
    assert.match(String(fenced.fenced_reason), new RegExp(`superseded by epoch ${1 + MAX_EPOCH_JUMP}`));
    assert.equal((await readEpoch(new Workspace(sdd))).superseded_by, 1 + MAX_EPOCH_JUMP);
  },
);

interface FollowerView {
  name: string;
  health: string;
  lag_entries: number;
  acked: Record<string, number>;
}

test(
  "a replayed or reordered POST /ack keeps the follower's highest position (per run and epoch)",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-ack-");
    const sdd = path.join(dir, "L", ".sdd");
    const ws = await leaderWorkspace(sdd, 40);
    await adoptEpoch(ws, 3);
    const { file: tokenFile, token } = await makeToken(dir);
    const leader = await serve(sdd, tokenFile, ["--follower", "east", "--max-lag-entries", "10"]);
    procs.push(leader.proc);
    const east = async (): Promise<FollowerView> =>
      ((await getJson(`${leader.url}/status`, token)).followers as FollowerView[]).find(
        (f) => f.name === "east",
      )!;
    const ack = async (epoch: number, seq: number): Promise<void> => {
      const r = await post(
        `${leader.url}/ack`,
        token,
        JSON.stringify({ region: "east", positions: { [TRANSPORT_RUN]: seq }, integrity_error: null }),
        { [EPOCH_HEADER]: String(epoch) },
      );
      assert.equal(r.status, 200, r.error);
    };

    await ack(3, 20);
    let v = await east();
    assert.equal(v.lag_entries, 19);
    assert.equal(v.health, "LAGGING");
    await ack(3, 39);
    v = await east();
    assert.equal(v.lag_entries, 0);
    assert.equal(v.health, "HEALTHY");
    // The same follower's earlier ack arrives late (a retried request): nothing moves back.
    await ack(3, 8);
    v = await east();
    assert.equal(v.acked[TRANSPORT_RUN], 39);
    assert.equal(v.lag_entries, 0);
    assert.equal(v.health, "HEALTHY", "a stale ack must not make the follower LAGGING");
    // An ack from an older epoch says nothing about this term.
    await ack(2, 5);
    v = await east();
    assert.equal(v.acked[TRANSPORT_RUN], 39);
    assert.equal(v.health, "HEALTHY");
  },
);
