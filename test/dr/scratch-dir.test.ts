/**
 * The temp folders of `dr verify` and `dr drill` after a SIGKILL: nothing can remove them then,
 * so the next verify or drill removes those whose owner is dead, and only those (a live owner's
 * folder, a folder without an owner in its name and a file of that name are left alone).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { makeBenchWorkspace, runCli, scratchDir, spawnCli, waitFor } from "../helpers.js";

test("a SIGKILLed dr verify's temp folder is removed by the next verify; a live owner's folder is kept", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const keyFile = path.join(dir, "key");
    const tmp = path.join(dir, "tmp");
    mkdirSync(tmp);
    const env = { BERNSTEIN_AUDIT_KEY_PATH: keyFile, BERNSTEIN_SDD: undefined, HOME: dir, TMPDIR: tmp };
    const sdd = makeBenchWorkspace(path.join(dir, "w"), { files: 3000, keyOut: keyFile });
    const archive = path.join(dir, "b.tar.gz");
    assert.equal((await runCli(["--sdd", sdd, "dr", "backup", "--to", archive, "--quiet"], { env })).code, 0);

    const killed = spawnCli(["dr", "verify", "--from", archive], { env });
    // Mid-way: the folder holds part of the extracted archive.
    const left = await waitFor(
      "the verify's temp folder with extracted files",
      () => {
        const name = readdirSync(tmp).find((n) => n.startsWith("bernstein-verify-"));
        return name && existsSync(path.join(tmp, name, "sdd", "runtime")) ? path.join(tmp, name) : undefined;
      },
      { exited: killed.done },
    );
    killed.child.kill("SIGKILL");
    assert.equal((await killed.done).signal, "SIGKILL");
    assert.ok(existsSync(left), "SIGKILL leaves the folder");

    // A drill's folder of another dead process, a folder of a live one (this test), and names
    // that are not ours to judge.
    const exited = spawnCli(["--version"], { env });
    await exited.done;
    const deadDrill = path.join(tmp, `bernstein-drill-${exited.child.pid!}-a1B2c3`);
    const live = path.join(tmp, `bernstein-verify-${process.pid}-a1B2c3`);
    const noOwner = path.join(tmp, "bernstein-verify-a1B2c3");
    for (const d of [deadDrill, live, noOwner]) {
      mkdirSync(d);
      writeFileSync(path.join(d, "x"), "x");
    }
    const notAFolder = path.join(tmp, `bernstein-verify-${exited.child.pid!}-zzzzzz`);
    writeFileSync(notAFolder, "a file");

    const again = await runCli(["dr", "verify", "--from", archive], { env });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.ok(!existsSync(left), "the killed verify's folder is gone");
    assert.ok(!existsSync(deadDrill), "a dead drill's folder is gone");
    for (const kept of [live, noOwner, notAFolder]) assert.ok(existsSync(kept), `${kept} is kept`);
    assert.deepEqual(
      readdirSync(tmp).sort(),
      [path.basename(noOwner), path.basename(live), path.basename(notAFolder)].sort(),
      "the second verify removed its own folder too",
    );
  } finally {
    await cleanup();
  }
});
