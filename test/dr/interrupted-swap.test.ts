/**
 * A restore killed inside its journaled swap (real children, SIGKILLed by the crash-point hook at
 * `dr_restore:after_journal` and `dr_restore:between_renames`): every command that opens the
 * workspace says so (exit 3) instead of reading the old tree or offering `init`, `init` makes
 * nothing, and `dr restore --finish` completes the restore the user asked for. Nothing that stood
 * at the target is ever removed: not the old tree, not a folder made there between the renames.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";

async function backupsOfTwoStates(dir: string, env: Record<string, string | undefined>) {
  const sdd = path.join(dir, "src", ".sdd");
  const ok = async (args: string[]) => {
    const r = await runCli([...args, "--sdd", sdd], { env });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  };
  await ok(["init"]);
  await ok(["task", "add", "old task", "--id", "OLD", "--command", "true"]);
  const old = path.join(dir, "old.tar.gz");
  await ok(["dr", "backup", "--to", old]);
  await ok(["task", "add", "new task", "--id", "NEW", "--command", "true"]);
  const fresh = path.join(dir, "new.tar.gz");
  await ok(["dr", "backup", "--to", fresh]);
  return { old, fresh };
}

/** A target restored from the old state, then a restore of the new one SIGKILLed at `phase`. */
async function killedInsideSwap(t: TestContext, phase: "after_journal" | "between_renames") {
  const { dir, cleanup } = await scratchDir("bernstein-swap-");
  t.after(cleanup);
  const env = envFor(dir);
  const { old, fresh } = await backupsOfTwoStates(dir, env);
  const target = path.join(dir, "t", ".sdd");
  assert.equal((await runCli(["dr", "restore", "--from", old, "--sdd", target], { env })).code, 0);
  const killed = await runCli(["dr", "restore", "--from", fresh, "--sdd", target], {
    env: { ...env, BERNSTEIN_CRASH_AT: `dr_restore:${phase}` },
  });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  return { env, fresh, target };
}

async function taskIds(sdd: string, env: Record<string, string | undefined>): Promise<string[]> {
  const r = await runCli(["task", "list", "--json", "--sdd", sdd], { env });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { tasks: { id: string }[] }).tasks.map((t) => t.id).sort();
}

for (const phase of ["after_journal", "between_renames"] as const) {
  test(`a restore killed at dr_restore:${phase}: refused by every command, finished by dr restore --finish`, async (t) => {
    const { env, fresh, target } = await killedInsideSwap(t, phase);
    assert.equal(existsSync(target), phase === "after_journal");

    for (const args of [["status"], ["doctor"], ["task", "list"], ["start", "--until-idle"], ["init"]]) {
      const r = await runCli([...args, "--sdd", target], { env });
      assert.equal(r.code, 3, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /in the middle of a restore.*bernstein dr restore --finish/);
    }
    assert.equal(existsSync(target), phase === "after_journal", "init made nothing");

    const wrong = await runCli(["dr", "restore", "--finish", "--from", fresh, "--sdd", target], { env });
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--finish reads no archive.*--from/);

    const done = await runCli(["dr", "restore", "--finish", "--json", "--sdd", target], { env });
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual(JSON.parse(done.stdout), {
      ok: true,
      target,
      finished: true,
      action: "rolled forward an interrupted restore",
      removed_staging: [],
    });
    assert.deepEqual(await taskIds(target, env), ["NEW", "OLD"]);
    const kept = (await readdir(path.dirname(target))).filter((n) => n.startsWith(".sdd.pre-restore-"));
    assert.equal(kept.length, 1, `kept: ${kept.join(", ")}`);
    assert.deepEqual(await taskIds(path.join(path.dirname(target), kept[0]!), env), ["OLD"]);
    assert.deepEqual(
      (await readdir(path.dirname(target))).filter((n) => n.startsWith("..sdd.restore")),
      [],
      "no journal or staging folder left",
    );

    const again = await runCli(["dr", "restore", "--finish", "--sdd", target], { env });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing to finish/);

    // The staging folder of a restore that died before its swap (a pid no longer alive): the
    // next restore would remove it, and so does --finish, which names it.
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid!;
    const dead = path.join(path.dirname(target), `..sdd.restore-${deadPid}-0123abcd`);
    await mkdir(path.join(dead, "runtime"), { recursive: true });
    const cleaned = await runCli(["dr", "restore", "--finish", "--json", "--sdd", target], { env });
    assert.equal(cleaned.code, 0, cleaned.stderr);
    assert.deepEqual(JSON.parse(cleaned.stdout).removed_staging, [dead]);
    assert.equal(existsSync(dead), false);
    const doctor = await runCli(["doctor", "--sdd", target], { env });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  });
}

test("a folder made at the target between the renames is kept, not removed, when the restore is finished", async (t) => {
  const { env, fresh, target } = await killedInsideSwap(t, "between_renames");
  // What a user (or a tool of theirs) might make by hand there meanwhile.
  await mkdir(target);
  await writeFile(path.join(target, "notes.md"), "written after the crash\n");

  // A full restore finishes the interrupted one first, then replaces it (keeping it, as always).
  const r = await runCli(["dr", "restore", "--from", fresh, "--sdd", target, "--json"], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await taskIds(target, env), ["NEW", "OLD"]);
  const kept = (await readdir(path.dirname(target))).filter((n) => n.startsWith(".sdd.pre-restore-"));
  const notes = await Promise.all(
    kept.map((k) => readFile(path.join(path.dirname(target), k, "notes.md"), "utf8").catch(() => null)),
  );
  assert.deepEqual(
    notes.filter((n) => n !== null),
    ["written after the crash\n"],
    `kept: ${kept.join(", ")}`,
  );
  assert.ok(
    (JSON.parse(r.stdout) as { warnings: string[] }).warnings.some((w) =>
      /rolled forward an interrupted restore \(what was made at its target since is kept as/.test(w),
    ),
    r.stdout,
  );
});
