/**
 * A running `dr archive` fed one small burst of decisions at a time, each waited for in the store
 * (so every burst is its own small segment): what background compaction needs to have work.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { listArchive } from "../../../src/archive/catalog.js";
import { readArchiveStatus } from "../../../src/archive/health.js";
import type { BackupStore } from "../../../src/storage/store.js";
import { runMain, spawnCli, waitFor, type CliResult } from "../../helpers.js";
import { appendDecisions, type ArchiveFixture } from "./archive-workspace.js";

/** The WAL segments of run `run` in the store (every generation), oldest first; none before the store exists. */
export async function walSegmentsOf(store: BackupStore, run: string) {
  const stream = `runtime/wal/${run}.wal.jsonl`;
  const listing = await listArchive(store).catch((err: unknown) => {
    if (/no such file or folder/.test(String(err))) return { generations: [] };
    throw err;
  });
  return listing.generations.flatMap((g) => g.segments.get(stream) ?? []);
}

/** The newest WAL seq of `run` the store holds in segments (-1: none). */
export async function storedSeq(store: BackupStore, run: string): Promise<number> {
  return Math.max(-1, ...(await walSegmentsOf(store, run)).map((s) => s.lastSeq ?? -1));
}

export interface RunningArchiver {
  pid: number;
  /** When it was spawned (epoch ms). */
  spawnedAt: number;
  done: Promise<CliResult>;
  stop: () => Promise<CliResult>;
  kill: () => Promise<CliResult>;
}

const running = new Set<{ kill: () => unknown }>();

/** Ends the archivers a failed test left running (after()). */
export function killLeftArchivers(): void {
  for (const c of running) c.kill();
}

/** `dr archive --to <to> --interval 10ms <extra>` as a child process. */
export function spawnArchiver(f: ArchiveFixture, to: string, extra: string[]): RunningArchiver {
  const spawnedAt = Date.now();
  const { child, done } = spawnCli(
    ["--sdd", f.sdd, "dr", "archive", "--to", to, "--interval", "10ms", ...extra],
    { env: f.env, cwd: f.dir },
  );
  const handle = { kill: () => child.kill("SIGKILL") };
  running.add(handle);
  void done.then(() => running.delete(handle));
  return {
    pid: child.pid!,
    spawnedAt,
    done,
    stop: () => (child.kill("SIGTERM"), done),
    kill: () => (child.kill("SIGKILL"), done),
  };
}

/**
 * Appends `bursts` bursts of 1 or 2 decisions (`rand`) from seq `made`, waiting after each until
 * the store holds it; stops early (returning what was made) once `halt()` says so or the archiver
 * exits. Returns the number of decisions made in all.
 */
export async function feedBursts(
  f: ArchiveFixture,
  store: BackupStore,
  run: string,
  a: RunningArchiver,
  opts: { bursts: number; made: number; rand: () => number; halt?: () => boolean },
): Promise<number> {
  let made = opts.made;
  // Decisions made before the first cycle go into the base snapshot, not into segments. The
  // archiver announces itself with the caught-up time of the previous one of the workspace.
  await waitFor(
    "the archiver's first cycle",
    async () => {
      const st = await readArchiveStatus(f.sdd);
      return (
        st !== undefined &&
        st.pid === a.pid &&
        st.caught_up_at !== null &&
        Date.parse(st.caught_up_at) >= a.spawnedAt
      );
    },
    { exited: a.done },
  );
  for (let b = 0; b < opts.bursts && !opts.halt?.(); b++) {
    const n = 1 + Math.floor(opts.rand() * 2);
    await appendDecisions(f.ws, run, n, made);
    made += n;
    const want = made - 1;
    await waitFor(
      `seq ${want} in the store`,
      async () => opts.halt?.() || (await storedSeq(store, run)) >= want,
      {
        exited: a.done,
      },
    );
  }
  return made;
}

/** The source WAL of `run` cut right after `seq` (what a restore to that seq must hold). */
export async function walPrefix(f: ArchiveFixture, run: string, seq: number): Promise<string> {
  const lines = (await readFile(f.ws.walFile(run), "utf8")).split("\n");
  return lines.slice(0, seq + 1).join("\n") + "\n";
}

/**
 * Restores `--at-seq run:seq` into a new folder and `dr verify`s the same point: the restored WAL
 * must be the source's up to that entry (no entry lost, none twice). `via`: "in-process" (the
 * same commands by main() in this process, runMain) for the many points of one case once a CLI
 * run of the same case has checked the commands as processes.
 */
export async function restoresAt(
  f: ArchiveFixture,
  from: string,
  run: string,
  seq: number,
  extra: string[] = [],
  via: "cli" | "in-process" = "cli",
): Promise<void> {
  const cli =
    via === "cli"
      ? f.cli
      : (args: string[], at = f.sdd) => runMain(["--sdd", at, ...args], { env: f.env, cwd: f.dir });
  const target = path.join(f.dir, "restores", `${path.basename(from)}-${seq}-${Date.now()}`, ".sdd");
  const point = ["--from", from, "--at-seq", `${run}:${seq}`, ...extra];
  const r = await cli(["--json", "dr", "restore", ...point], target);
  assert.equal(r.code, 0, `restore ${run}:${seq}: ${r.stderr}`);
  assert.equal(
    await readFile(path.join(target, "runtime", "wal", `${run}.wal.jsonl`), "utf8"),
    await walPrefix(f, run, seq),
    `restored WAL at ${run}:${seq}`,
  );
  const v = await cli(["--json", "dr", "verify", ...point]);
  assert.equal(v.code, 0, `verify ${run}:${seq}: ${v.stdout}${v.stderr}`);
}

/** Seqs to restore to: inside each merged segment (first, middle, last) plus the newest. */
export async function pointsInsideMerges(store: BackupStore, run: string, max = 6): Promise<number[]> {
  const seqs = new Set<number>();
  for (const s of await walSegmentsOf(store, run)) {
    if (s.firstSeq === undefined || s.lastSeq === undefined || s.lastSeq - s.firstSeq < 2) continue;
    seqs.add(s.firstSeq).add(Math.floor((s.firstSeq + s.lastSeq) / 2));
  }
  const picked = [...seqs].sort((x, y) => x - y);
  const step = Math.max(1, Math.ceil(picked.length / max));
  return picked.filter((_, i) => i % step === 0);
}
