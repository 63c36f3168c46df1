/**
 * SIGINT at any moment of a restore, from real child processes, for `dr restore` of a backup and
 * for a point-in-time restore of a WAL archive: seeded moments (at once; when the restore lock
 * appears or the first folder it makes for the target; when the staging folder appears; a while into the extraction), each plus a seeded
 * extra delay. Whatever the moment: the exit is 130 (or the default death by SIGINT before the
 * restore made anything, or 0 when the restore had finished), nothing is left beside or above
 * the target that the restore made, the previous target is untouched, and a removal is claimed
 * only for what is gone. And a later restore removes the nested staging folders and locks that
 * a killed point-in-time restore of an older version left.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { archiveFixture } from "../archive/support/archive-workspace.js";
import {
  folderChanges,
  makeBenchWorkspace,
  runCli,
  scratchDir,
  spawnCli,
  waitFor,
  withSeed,
  envFor,
} from "../helpers.js";

const ROUNDS = 6;

/**
 * "made": the moment the restore makes the outermost folder for its target (seen through inotify,
 * at once: locks, temp files and staging follow within milliseconds); "lock" instead when there
 * is no folder to make.
 */
type Moment = "at-once" | "made" | "staging" | "into-extraction";
const MOMENTS: Moment[] = ["at-once", "made", "made", "staging", "into-extraction"];
const EXTRA_MS: Record<Moment, number> = { "at-once": 0, made: 20, staging: 60, "into-extraction": 600 };

const list = (dir: string): Promise<string[]> =>
  readdir(dir).then(
    (names) => names.sort(),
    () => [],
  );

/**
 * Runs `args` (a restore into `target`), interrupts it at a seeded moment, and checks what is
 * left: `before` is the parent's listing before (undefined: the restore makes `made`, the
 * outermost folder it must create), `marker` a file of the previous target that must not change.
 */
async function interruptOnce(
  rand: () => number,
  round: number,
  args: string[],
  target: string,
  opts: {
    env: Record<string, string | undefined>;
    cwd: string;
    made?: string;
    marker?: { file: string; text: string };
  },
): Promise<void> {
  const parent = path.dirname(target);
  const before = opts.made ? undefined : await list(parent);
  const moment = MOMENTS[Math.floor(rand() * MOMENTS.length)]!;
  const extraMs = Math.floor(rand() * EXTRA_MS[moment]);
  const what = `round ${round} (${moment} + ${extraMs} ms)`;
  const seen = async (re: RegExp): Promise<boolean> => (await list(parent)).some((n) => re.test(n));
  // Watched before the child starts, so that the folder's creation is seen the moment it happens.
  const outside = opts.made ? folderChanges(path.dirname(opts.made), 50) : undefined;
  const { child, done } = spawnCli(args, { env: opts.env, cwd: opts.cwd });
  let exited = false;
  void done.then(() => (exited = true));
  const started = await (async () => {
    try {
      if (moment === "made" && opts.made) {
        while (!existsSync(opts.made)) {
          if (exited) return false;
          await outside!.next();
        }
      } else if (moment === "made")
        await waitFor("the restore lock", () => seen(/\.restore\.lock$/), { exited: done });
      if (moment === "staging" || moment === "into-extraction")
        await waitFor("the staging folder", () => seen(/\.restore-\d+-[0-9a-f]+$/), { exited: done });
      return true;
    } catch {
      return false; // the restore finished first: checked below like any other end
    } finally {
      outside?.close();
    }
  })();
  if (started && extraMs) await new Promise((r) => setTimeout(r, extraMs));
  child.kill("SIGINT");
  const r = await done;
  const restored = existsSync(path.join(target, "runtime", "restored-from.json"));
  const completed = r.code === 0 || (r.code === 130 && /finished it/.test(r.stderr));
  if (completed) {
    assert.ok(restored, `${what}: finished, the target is the restored workspace`);
  } else {
    assert.ok(
      r.code === 130 || (r.code === null && r.signal === "SIGINT"),
      `${what}: exit ${r.code} (${r.signal}); ${r.stderr}`,
    );
    if (opts.marker)
      assert.equal(
        await readFile(opts.marker.file, "utf8"),
        opts.marker.text,
        `${what}: previous target changed`,
      );
    else assert.ok(!existsSync(target), `${what}: a target appeared`);
  }
  // Nothing beside the target but the target (and, after a swap over one, the kept previous one).
  if (opts.made && !completed) {
    assert.ok(!existsSync(opts.made), `${what}: left ${opts.made}: ${(await list(parent)).join(" ")}`);
  } else {
    const left = (await list(parent)).filter(
      (n) => !(before ?? []).includes(n) && n !== path.basename(target) && !/\.pre-restore-/.test(n),
    );
    assert.deepEqual(left, [], `${what}: left beside the target; stderr: ${r.stderr}`);
  }
  // One line on an interrupt, and a removal claimed only for what is gone (checked above).
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("bernstein:"));
  assert.ok(
    lines.every((l) => /^bernstein: interrupted by SIGINT/.test(l)),
    `${what}: ${r.stderr}`,
  );
  for (const m of r.stderr.matchAll(/staging folder (\S+?)(?:,|;|$)/gm))
    assert.ok(!existsSync(path.resolve(opts.cwd, m[1]!)), `${what}: claimed removed, still there: ${m[1]}`);
}

test("SIGINT at any moment of dr restore of a backup: exit 130, nothing left, the previous target untouched", async () => {
  const scratch = await scratchDir("bernstein-restore-anytime-");
  try {
    const env = envFor(scratch.dir);
    const sdd = makeBenchWorkspace(path.join(scratch.dir, "src"), {
      files: 2500,
      keyOut: path.join(scratch.dir, "key", "audit.key"),
    });
    const backup = path.join(scratch.dir, "bk.tar.gz");
    const b = await runCli(["--sdd", sdd, "dr", "backup", "--to", backup], { env, cwd: scratch.dir });
    assert.equal(b.code, 0, b.stderr);
    // An existing target, restored over again and again: it must stay as it was when interrupted.
    // A workspace (a restore refuses to replace any other folder).
    const existing = path.join(scratch.dir, "old", ".sdd");
    await mkdir(path.join(existing, "runtime"), { recursive: true });
    await mkdir(path.join(existing, "backlog"));
    const marker = { file: path.join(existing, "marker"), text: "the previous target\n" };
    await writeFile(marker.file, marker.text);
    await withSeed("RESTORE_ANYTIME_SEED", async (rand) => {
      for (let i = 0; i < ROUNDS; i++) {
        const over = i % 3 === 2 && existsSync(marker.file);
        const made = path.join(scratch.dir, `new${i}`);
        const target = over ? existing : path.join(made, "x", ".sdd");
        await interruptOnce(rand, i, ["--sdd", target, "dr", "restore", "--from", backup], target, {
          env,
          cwd: scratch.dir,
          ...(over ? { marker } : { made }),
        });
      }
    });
  } finally {
    await scratch.cleanup();
  }
});

test("SIGINT at any moment of a point-in-time restore: exit 130, no staging folder (nested or not), lock or folder left", async () => {
  const scratch = await scratchDir("bernstein-pit-anytime-");
  try {
    const f = await archiveFixture(path.join(scratch.dir, "ws"));
    const many = path.join(f.sdd, "docs", "many");
    await mkdir(many, { recursive: true });
    for (let i = 0; i < 2000; i++) await writeFile(path.join(many, `note-${i}.md`), `note ${i}\n`.repeat(20));
    const store = path.join(f.dir, "store");
    const archived = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(archived.code, 0, archived.stderr);
    await withSeed("PIT_ANYTIME_SEED", async (rand) => {
      for (let i = 0; i < ROUNDS; i++) {
        const made = path.join(scratch.dir, `new${i}`);
        const target = path.join(made, "a", ".sdd");
        await interruptOnce(
          rand,
          i,
          ["--sdd", target, "dr", "restore", "--from", store, "--latest"],
          target,
          {
            env: f.env,
            cwd: f.dir,
            made,
          },
        );
      }
    });
  } finally {
    await scratch.cleanup();
  }
});

test("a restore removes the nested staging folders, locks and lock temp files a killed point-in-time restore left", async () => {
  const scratch = await scratchDir("bernstein-nested-leftovers-");
  try {
    const f = await archiveFixture(path.join(scratch.dir, "ws"));
    const store = path.join(f.dir, "store");
    const archived = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(archived.code, 0, archived.stderr);
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    const parent = path.join(scratch.dir, "cf");
    const outer = `..sdd.restore-${dead}-c84f3e35`;
    await mkdir(path.join(parent, outer, "audit"), { recursive: true });
    await writeFile(path.join(parent, outer, "audit", "2026-12-06.jsonl"), "{}\n");
    await mkdir(path.join(parent, `${outer}.restore-${dead}-b4cb2643`, "docs"), { recursive: true });
    await writeFile(path.join(parent, `${outer}.restore.lock`), JSON.stringify({ pid: dead }) + "\n");
    await writeFile(path.join(parent, `.${outer}.restore.lock.tmp-${dead}-e9392877`), "");
    await writeFile(path.join(parent, `...sdd.restore.lock.tmp-${dead}-e9392877`), "");
    const r = await f.cli(["dr", "restore", "--from", store, "--latest"], path.join(parent, ".sdd"));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await list(parent), [".sdd"]);
  } finally {
    await scratch.cleanup();
  }
});
