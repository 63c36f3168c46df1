/**
 * The live replication process's address (`runtime/replication/endpoint.json`) belongs to one
 * workspace on one host: `dr status` of a copy (an older backup restored elsewhere, a workspace
 * copied whole) must not ask the original's process and show its followers as its own, and
 * backups leave the file out.
 */
import assert from "node:assert/strict";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { excludedBy } from "../../src/dr/walk.js";
import { readLiveEndpoint, writeEndpoint } from "../../src/replication/endpoint.js";
import { initWorkspace } from "../../src/workspace/layout.js";
import { scratchDir } from "../helpers.js";

test("an endpoint record copied to another folder names no live process there; backups leave it out", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-endpoint-");
  try {
    const { workspace: ws } = await initWorkspace(path.join(dir, "a", ".sdd"));
    // This process stands for the live one: it is alive.
    await writeEndpoint(ws, {
      pid: process.pid,
      url: "http://127.0.0.1:1",
      token_file: null,
      role: "leader",
    });
    assert.equal((await readLiveEndpoint(ws))?.pid, process.pid);

    const { workspace: copy } = await initWorkspace(path.join(dir, "b", ".sdd"));
    const rel = path.join("runtime", "replication", "endpoint.json");
    await cp(ws.p(rel), copy.p(rel), { recursive: true });
    assert.equal(await readLiveEndpoint(copy), null, "the copy's dr status asks no process");

    // A record written before homes were kept still names its process.
    const legacy = JSON.parse(await readFile(ws.p(rel), "utf8")) as Record<string, unknown>;
    delete legacy.host;
    delete legacy.sdd;
    await mkdir(path.dirname(copy.p(rel)), { recursive: true });
    await writeFile(copy.p(rel), JSON.stringify(legacy));
    assert.equal((await readLiveEndpoint(copy))?.pid, process.pid);

    assert.match(excludedBy("runtime/replication/endpoint.json") ?? "", /pattern/);
    assert.match(excludedBy("runtime/archive-status.json") ?? "", /pattern/);
    assert.equal(excludedBy("runtime/replication/role.json"), undefined, "the node's role travels");
  } finally {
    await cleanup();
  }
});
