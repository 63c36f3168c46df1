/**
 * Under `umask 000` a workspace is still written only by its owner: `init`, `start` (WAL, audit,
 * agent logs) and a restore's new parents get explicit modes, and `start` refuses a workspace
 * folder another user could drop a task into.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { chmod } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";

const writableByOthers = (root: string): string[] =>
  execFileSync("find", [root], { encoding: "utf8" })
    .trim()
    .split("\n")
    .filter((f) => (statSync(f).mode & 0o022) !== 0);

test("umask 000: init, start, agent logs and a restore's parents are not group/other-writable; start refuses a backlog others may write", async () => {
  const { dir, cleanup } = await scratchDir();
  // The CLI children inherit the umask; set back before anything else runs.
  const previousUmask = process.umask(0);
  try {
    const env = envFor(dir);
    const sdd = path.join(dir, "w", ".sdd");
    const run = async (args: string[], code = 0) => {
      const r = await runCli([...args, "--sdd", sdd], { env });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      return r;
    };
    await run(["init"]);
    await run(["task", "add", "a", "--command", "true"]);
    await run(["start", "--until-idle"]);
    assert.ok(readdirSync(path.join(sdd, "logs", "agents")).length > 0, "an agent log was written");
    assert.deepEqual(writableByOthers(sdd), []);
    assert.equal((statSync(path.join(sdd, "backlog", "open")).mode & 0o777).toString(8), "755");

    const archive = path.join(dir, "b.tar.gz");
    await run(["dr", "backup", "--to", archive]);
    const target = path.join(dir, "new", "deeper", ".sdd");
    const r = await runCli(["dr", "restore", "--from", archive, "--sdd", target], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(writableByOthers(path.join(dir, "new")), []);

    const open = path.join(sdd, "backlog", "open");
    await chmod(open, 0o777);
    const walBefore = readdirSync(path.join(sdd, "runtime", "wal")).sort();
    const refused = await run(["start", "--until-idle"], 2);
    assert.equal(
      refused.stderr,
      `bernstein: ${open} is writable by every user (mode 777): another user could put a task there ` +
        `for start to run; run: chmod o-w ${open}\n`,
    );
    assert.deepEqual(readdirSync(path.join(sdd, "runtime", "wal")).sort(), walBefore, "no run was started");
    // Group-writable (the user-private-group umask 002 makes every folder so) is the owner's choice.
    await chmod(open, 0o775);
    await run(["start", "--until-idle"]);
  } finally {
    process.umask(previousUmask);
    await cleanup();
  }
});
