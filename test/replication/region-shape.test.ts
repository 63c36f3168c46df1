/**
 * A leader takes from the network only region names of the shape `--follower` accepts: an ack's
 * `region` or an `x-bernstein-region` header of any other shape is refused with 400 and never
 * becomes a follower that `dr status` would print.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import {
  getJson,
  leaderWorkspace,
  makeToken,
  scratchWithProcs,
  serve,
  TRANSPORT_RUN,
} from "./support/procs.js";

test(
  "POST /ack and the region header refuse a region that is not letters, digits, . _ -",
  { timeout: 60_000 },
  async (t) => {
    const { dir, procs } = await scratchWithProcs(t, "bernstein-repl-region-");
    const sdd = path.join(dir, "L", ".sdd");
    await leaderWorkspace(sdd, 3);
    const { file: tokenFile, token } = await makeToken(dir);
    const leader = await serve(sdd, tokenFile);
    procs.push(leader.proc);
    const authorization = `Bearer ${token}`;
    const ack = (region: string, headers: Record<string, string> = {}) =>
      fetch(leader.url + "/ack", {
        method: "POST",
        headers: { authorization, "content-type": "application/json", ...headers },
        body: JSON.stringify({ region, positions: { [TRANSPORT_RUN]: 2 } }),
      });

    for (const region of ["x\u001b[2J", "a\nFAKE", "two words", "", "x/y"]) {
      const r = await ack(region);
      assert.equal(r.status, region === "" ? 409 : 400, JSON.stringify(region));
    }
    const header = await ack("ok-1", { "x-bernstein-region": "x y" });
    assert.equal(header.status, 400);
    assert.match(((await header.json()) as { error: string }).error, /x-bernstein-region/);

    const good = await ack("eu-west_1.a");
    assert.equal(good.status, 200, await good.text());
    const followers = ((await getJson(leader.url + "/status", token)) as { followers: { name: string }[] })
      .followers;
    assert.deepEqual(
      followers.map((f) => f.name),
      ["eu-west_1.a"],
    );
  },
);
