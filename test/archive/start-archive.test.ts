/**
 * The archiver inside the orchestrator (`start --archive-to`): `stop` returns with the run's last
 * entry in the store, a second archiver is refused; with `--sync` every agent finds its spawn
 * intent already in the S3-compatible store when it starts, and a store outage holds decisions
 * (shown by `dr status`) until the store answers. The archiver's health in the metrics file.
 */
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { parseSegmentKey } from "../../src/archive/names.js";
import { addTask } from "../../src/orchestrator/tasks.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { isProcessAlive } from "../../src/workspace/process.js";
import { scratchDir, waitFor } from "../helpers.js";
import { taskCounts } from "../orchestrator/support/task-counts.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";
import {
  appendDecisions,
  archiveFixture,
  sha256File,
  type ArchiveFixture,
} from "./support/archive-workspace.js";

const BUCKET = "start-archive";
/** Long enough that only the first cycle, the commit gate and the final cycle ship anything. */
const NEVER = "1h";

async function tasksDone(f: ArchiveFixture): Promise<number> {
  const r = await f.cli(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { tasks: { done: number } }).tasks.done;
}

/** Waits (polling the folders in-process) until `n` tasks are done, then checks that `status` says so. */
async function untilDone(f: ArchiveFixture, n: number): Promise<void> {
  await waitFor(`${n} task(s) done`, async () => (await taskCounts(f.ws)).done === n);
  assert.equal(await tasksDone(f), n);
}

/** Orchestrators started in the background: a failed test must not leave one waiting on a gone store. */
const detached: number[] = [];

async function startDetached(f: ArchiveFixture, archive: string[]): Promise<void> {
  const r = await f.cli(["--json", "start", "--detach", "--poll", "50", ...archive]);
  assert.equal(r.code, 0, r.stderr);
  detached.push((JSON.parse(r.stdout) as { pid: number }).pid);
}

async function walEntries(ws: Workspace) {
  const all = [];
  for (const run of await listRuns(ws))
    for await (const { entry } of readWalEntries(run.file)) all.push({ run: run.run_id, ...entry });
  return all;
}

describe("start --archive-to", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-start-archive-");
  });
  after(async () => {
    for (const pid of detached) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    await h.close();
    await scratch.cleanup();
  });

  it("stop returns once the store holds the run's last entry; a second archiver is refused (exit 3)", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "stop"));
    const store = path.join(f.dir, "store");
    await startDetached(f, ["--archive-to", store, "--archive-interval", NEVER]);
    for (const id of ["a", "b"]) await addTask(f.ws, { id, title: id, command: "true" });
    await untilDone(f, 2);

    const second = await f.cli(["dr", "archive", "--to", path.join(f.dir, "other"), "--once"]);
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /already archives this workspace to .*store/);

    const stop = await f.cli(["--json", "stop"]);
    assert.equal(stop.code, 0, stop.stderr);
    const runs = await listRuns(f.ws);
    const run = runs[runs.length - 1]!.run_id;
    const entries = await walEntries(f.ws);
    assert.equal(entries[entries.length - 1]!.decision_type, "orchestrator_stopped");

    const restored = path.join(f.dir, "restored", ".sdd");
    const rr = await f.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], restored);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(
      await sha256File(path.join(restored, "runtime", "wal", `${run}.wal.jsonl`)),
      await sha256File(f.ws.walFile(run)),
      "the store holds the whole run, orchestrator_stopped included",
    );
    const shown = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout);
    assert.equal(shown.archive.running, false);
    assert.ok(shown.archive.stopped_at, JSON.stringify(shown.archive));
    assert.equal(shown.rpo_estimate.entries, 0, "the store holds everything the WAL does");
    assert.match(shown.rpo_estimate.basis, /^WAL archive .*store, archiver not running since /);
    // People read the paths as they would type them, from where they ran the command.
    const stopped = (await f.cli(["dr", "status"])).stdout;
    assert.match(stopped, /^Archive: +store not running /m, stopped);
    assert.match(stopped, /^RPO: +0 entries, 0 s \(WAL archive store, archiver not running since /m, stopped);

    // A run without the archiver: what losing this host would lose now is that run.
    await addTask(f.ws, { id: "c", title: "c", command: "true" });
    const unarchived = await f.cli(["start", "--until-idle"]);
    assert.equal(unarchived.code, 0, unarchived.stderr);
    const newRun = (await listRuns(f.ws)).at(-1)!;
    assert.notEqual(newRun.run_id, run);
    const since = (await walEntries(f.ws)).filter((e) => e.run === newRun.run_id).length;
    assert.ok(since > 0);
    const later = await f.cli(["--json", "dr", "status"]);
    const rpo = JSON.parse(later.stdout).rpo_estimate;
    assert.equal(rpo.entries, since, later.stdout);
    assert.ok(rpo.seconds > 0, later.stdout);
    const human = await f.cli(["dr", "status"]);
    assert.match(human.stdout, new RegExp(`^Archive: .* not running .*, lag ${since} entries`, "m"));
    assert.match(human.stdout, new RegExp(`^RPO: +${since} entries`, "m"));
    assert.match(human.stdout, /^Archive: .*, restorable from \d{4}-\d\d-\d\dT[\d:.]+Z/m);

    // The archived run rewritten shorter under the stopped archiver: none of it counts as archived.
    const file = f.ws.walFile(run);
    const kept = (await readFile(file, "utf8")).split("\n").slice(0, 3).join("\n") + "\n";
    await writeFile(file, kept);
    const rewritten = JSON.parse((await f.cli(["--json", "dr", "status"])).stdout).rpo_estimate;
    assert.equal(rewritten.entries, since + 3, JSON.stringify(rewritten));
  });

  it("--sync: each agent finds its spawn intent in the store; an outage holds decisions until the store answers", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "sync"), h.env);
    const prefix = "sync";
    const objects = path.join(h.dir, BUCKET, prefix);
    const seen = (id: string) => path.join(f.dir, `seen-${id}.txt`);
    // What the store holds at the moment the agent runs: s3rver's own folder, listed by the agent.
    const task = (id: string) => addTask(f.ws, { id, title: id, command: `ls ${objects} > ${seen(id)}` });
    await startDetached(f, [
      "--archive-to",
      `s3://${BUCKET}/${prefix}/`,
      "--archive-endpoint",
      h.endpoint,
      "--archive-retries",
      "0",
      "--archive-interval",
      NEVER,
      "--sync",
    ]);
    for (const id of ["s1", "s2", "s3"]) await task(id);
    await untilDone(f, 3);

    h.setFault((op) => (op === "PutObject" ? 503 : undefined));
    await task("s4");
    const blocked = await waitFor("decisions held by the outage", async () => {
      const s = await readArchiveStatus(f.sdd);
      return s && s.decisions_waiting > 0 && s.errors_in_a_row > 0 ? s : undefined;
    });
    assert.ok(blocked.last_error, JSON.stringify(blocked));
    const status = await f.cli(["dr", "status"]);
    assert.match(status.stdout, /--sync: \d+ commit group\(s\) wait for the store/);
    // The held decision is s4's adoption: nothing about s4 is acted on while the store is down.
    await assert.rejects(readFile(seen("s4")), { code: "ENOENT" });
    h.setFault(undefined);
    await untilDone(f, 4);
    assert.equal((await f.cli(["stop"])).code, 0);

    const entries = await walEntries(f.ws);
    for (const id of ["s1", "s2", "s3", "s4"]) {
      const intent = entries.find(
        (e) => e.decision_type === "task_spawn_confirmed" && e.inputs.task_id === id && !e.committed,
      )!;
      const listed = (await readFile(seen(id), "utf8"))
        .split("\n")
        .map((n) => n.replace(/\._S3rver_object$/, ""));
      const holds = listed
        .map((n) => parseSegmentKey(n))
        .some(
          (s) =>
            s?.stream === `runtime/wal/${intent.run}.wal.jsonl` &&
            s.firstSeq! <= intent.seq &&
            intent.seq <= s.lastSeq!,
        );
      assert.ok(
        holds,
        `${id}: its spawn intent #${intent.seq} was not in the store when it ran:\n${listed.join("\n")}`,
      );
    }
  });

  it("--sync, SIGKILLed while the archiver thread's segment put is under way: the next archiver resumes without gap or duplicate", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "kill"), h.env);
    const prefix = "kill/";
    const url = `s3://${BUCKET}/${prefix}`;
    const remote = ["--endpoint", h.endpoint, "--retries", "0"];
    await startDetached(f, [
      "--archive-to",
      url,
      "--archive-endpoint",
      h.endpoint,
      "--archive-retries",
      "0",
      "--archive-interval",
      "50ms",
      "--sync",
    ]);
    const pid = detached[detached.length - 1]!;
    await addTask(f.ws, { id: "k1", title: "k1", command: "true" });
    await untilDone(f, 1);
    const wal = (key: string) =>
      key.startsWith(prefix) && parseSegmentKey(key.slice(prefix.length))?.stream.startsWith("runtime/wal/");
    h.setFault((op, _nth, key) => (op === "PutObject" && wal(key) ? "hold" : undefined));
    await addTask(f.ws, { id: "k2", title: "k2", command: "true" });
    await waitFor("a WAL segment's put held by the store", () => h.held.find((p) => wal(p.key)));
    process.kill(pid, "SIGKILL");
    await waitFor("the orchestrator gone", () => !isProcessAlive(pid));
    h.setFault(undefined);

    const again = await f.cli(["--json", "dr", "archive", "--to", url, "--once", ...remote]);
    assert.equal(again.code, 0, again.stderr);
    const list = await f.cli(["--json", "dr", "archive-list", "--from", url, "--check", ...remote]);
    assert.equal(list.code, 0, list.stdout + list.stderr);
    const gens = JSON.parse(list.stdout).generations;
    assert.equal(gens.length, 1, JSON.stringify(gens.map((g: { cause: string }) => g.cause)));
    assert.deepEqual(gens[0].gaps, []);
    const restored = path.join(f.dir, "restored", ".sdd");
    const rr = await f.cli(
      ["--json", "dr", "archive-restore", "--from", url, "--latest", ...remote],
      restored,
    );
    assert.equal(rr.code, 0, rr.stderr);
    for (const run of await listRuns(f.ws))
      assert.equal(
        await sha256File(path.join(restored, "runtime", "wal", `${run.run_id}.wal.jsonl`)),
        await sha256File(run.file),
        `${run.run_id}: the store holds the run's durable entries, each once`,
      );
  });

  it("keys: the configuration file's recipients encrypt start's archive (--detach too); key flags need --archive-to", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "keys"));
    const identity = path.join(f.dir, "restore-key.txt");
    const gen = await f.cli(["key", "generate", "-o", identity]);
    assert.equal(gen.code, 0, gen.stderr);
    await writeFile(
      path.join(path.dirname(f.sdd), "bernstein.yaml"),
      `backup:\n  recipients: [${gen.stdout.trim()}]\n`,
    );
    const alone = await f.cli(["start", "--until-idle", "--recipient", gen.stdout.trim()]);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /--recipient needs --archive-to/);
    // The archive's own flags too, --detach as well (it passes them on only with --archive-to).
    for (const [flags, named] of [
      [["--archive-interval", "1s"], "--archive-interval"],
      [["--detach", "--archive-metrics-file", path.join(f.dir, "a.prom")], "--archive-metrics-file"],
      [["--no-archive-compact"], "--no-archive-compact"],
    ] as const) {
      const r = await f.cli(["start", "--until-idle", ...flags]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `bernstein: start ${named} needs --archive-to\n`);
    }
    // A message about a flag names the flag typed.
    const notProm = await f.cli([
      "start",
      "--until-idle",
      "--archive-to",
      path.join(f.dir, "never"),
      "--archive-metrics-file",
      path.join(f.dir, "a.txt"),
    ]);
    assert.equal(notProm.code, 2, notProm.stderr);
    assert.match(
      notProm.stderr,
      /^bernstein: --archive-metrics-file \S+a\.txt: node_exporter's textfile collector reads only files ending in \.prom\n$/,
    );
    const plainS3 = await f.cli([
      "start",
      "--until-idle",
      "--archive-to",
      `s3://${BUCKET}/plain/`,
      "--plain",
    ]);
    assert.equal(plainS3.code, 2, plainS3.stderr);
    assert.match(plainS3.stderr, /--i-know-it-is-plain/);

    const store = path.join(f.dir, "store");
    await startDetached(f, ["--archive-to", store, "--archive-interval", NEVER]);
    await addTask(f.ws, { id: "k", title: "k", command: "true" });
    await untilDone(f, 1);
    const status = await f.cli(["--json", "dr", "status"]);
    const rpo = (JSON.parse(status.stdout) as { rpo_estimate: { basis: string; entries: number } })
      .rpo_estimate;
    assert.match(rpo.basis, /^WAL archive /, "a running archiver bounds what a lost host costs");
    assert.equal(typeof rpo.entries, "number");
    const stop = await f.cli(["stop"]);
    assert.equal(stop.code, 0, stop.stderr);

    const names = await readdir(store);
    const records = names.filter((n) => /^gen-[^.]+\.json$/.test(n));
    assert.equal(records.length, 1, names.join(" "));
    const record = JSON.parse(await readFile(path.join(store, records[0]!), "utf8")) as {
      encryption?: { scheme: string };
    };
    assert.equal(record.encryption?.scheme, "age");
    assert.ok(
      names.some((n) => n.endsWith(".tar.gz.age")),
      names.join(" "),
    );
    assert.ok(!names.some((n) => n.endsWith(".tar.gz")), "no plain snapshot");

    const target = path.join(f.dir, "restored", ".sdd");
    const keyless = await f.cli(["dr", "restore", "--from", store, "--latest"], target);
    assert.equal(keyless.code, 2, keyless.stderr);
    const restored = await f.cli(
      ["--json", "dr", "restore", "--from", store, "--latest", "--identity-file", identity],
      target,
    );
    assert.equal(restored.code, 0, restored.stderr);
    const runs = await listRuns(f.ws);
    const last = runs[runs.length - 1]!;
    assert.equal(
      await sha256File(path.join(target, "runtime/wal", path.basename(last.file))),
      await sha256File(last.file),
      "the restored WAL is the run's, to its last entry",
    );
  });

  it("the metrics file: dr backup's and the archiver's lines side by side; lag, errors, window", async () => {
    const f = await archiveFixture(path.join(scratch.dir, "metrics"), h.env);
    const metrics = path.join(f.dir, "bernstein.prom");
    const url = `s3://${BUCKET}/metrics/`;
    const remote = ["--endpoint", h.endpoint, "--retries", "0"];
    await appendDecisions(f.ws, "run-metrics", 5);
    const backup = async (name: string) => {
      const r = await f.cli(["dr", "backup", "--to", path.join(f.dir, name), "--metrics-file", metrics]);
      assert.equal(r.code, 0, r.stderr);
    };
    const archiveOnce = () =>
      f.cli(["dr", "archive", "--to", url, "--once", "--metrics-file", metrics, ...remote]);
    await backup("bk.tar.gz");
    const ok = await archiveOnce();
    assert.equal(ok.code, 0, ok.stderr);
    const value = (text: string, name: string): number | undefined => {
      const m = new RegExp(`^bernstein_${name}\\{sdd="[^"]+"\\} (\\S+)$`, "m").exec(text);
      return m ? Number(m[1]) : undefined;
    };
    let text = await readFile(metrics, "utf8");
    assert.equal(value(text, "backup_last_run_success"), 1, text);
    assert.equal(value(text, "archive_lag_entries"), 0, text);
    assert.equal(value(text, "archive_errors_total"), 0, text);
    assert.ok(value(text, "archive_last_upload_timestamp_seconds")! > 0, text);
    assert.ok(value(text, "archive_window_start_timestamp_seconds")! > 0, text);
    assert.ok(
      value(text, "archive_window_end_timestamp_seconds")! >=
        value(text, "archive_window_start_timestamp_seconds")!,
      text,
    );
    // A later run that ships nothing: the store proves nothing newer, so the window's end stays
    // the one dr list shows, to the millisecond (`--at @<value>` restores it).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal((await archiveOnce()).code, 0);
    text = await readFile(metrics, "utf8");
    const listed = await f.cli(["--json", "dr", "list", "--from", url, ...remote]);
    const [gen] = JSON.parse(listed.stdout).generations as { earliest: string; latest: string }[];
    assert.equal(
      Math.floor(value(text, "archive_window_end_timestamp_seconds")! * 1000),
      Date.parse(gen!.latest),
      text,
    );
    assert.equal(
      value(text, "archive_window_start_timestamp_seconds")! * 1000,
      Date.parse(gen!.earliest),
      text,
    );

    await appendDecisions(f.ws, "run-metrics", 7, 5);
    h.setFault((op) => (op === "PutObject" ? 503 : undefined));
    const down = await archiveOnce();
    h.setFault(undefined);
    assert.equal(down.code, 7, down.stderr);
    assert.match(down.stderr, /store error \(the local files keep everything; the next run sends them\)/);
    text = await readFile(metrics, "utf8");
    assert.equal(value(text, "archive_lag_entries"), 7, text);
    assert.equal(value(text, "archive_errors_in_a_row"), 1, text);
    assert.equal(value(text, "backup_last_run_success"), 1, "the backup's lines are kept: " + text);

    await backup("bk2.tar.gz");
    text = await readFile(metrics, "utf8");
    assert.equal(value(text, "archive_lag_entries"), 7, "the archiver's lines are kept: " + text);
    assert.equal((await readdir(f.dir)).filter((n) => n.endsWith(".prom")).length, 1);
  });
});
