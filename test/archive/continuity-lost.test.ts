/**
 * A workspace file cut back or removed under a running `dr archive` (the store holds bytes it no
 * longer has): not a store error. The archiver says what changed, starts a new generation at once
 * (a base snapshot, then the new bytes), counts it apart from the errors, and keeps running; the
 * old generation stays restorable, and the new one restores to the newest decision.
 */
import assert from "node:assert/strict";
import { access, appendFile, readFile, truncate, unlink } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readArchiveStatus } from "../../src/archive/health.js";
import { generationKey } from "../../src/archive/names.js";
import type { Workspace } from "../../src/workspace/layout.js";
import { scratchDir, spawnCli, waitFor } from "../helpers.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const RUN = "run-lost";
const LOG = "runs/agent.jsonl";
const line = (i: number): string => JSON.stringify({ timestamp: 1795744701 + i, n: i }) + "\n";

/** The archiver's status once it runs a generation other than `from` and has caught up. */
const newGeneration = (ws: Workspace, from: string | null, exited: Promise<unknown>) =>
  waitFor(
    "a new generation",
    async () => {
      const s = await readArchiveStatus(ws.root);
      return s && s.generation !== from && s.lag_entries === 0 ? s : undefined;
    },
    { exited },
  );

describe("dr archive when a workspace file stops holding what the store holds", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let f: ArchiveFixture;
  before(async () => {
    scratch = await scratchDir("bernstein-archive-lost-");
    f = await archiveFixture(path.join(scratch.dir, "src"));
  });
  after(async () => {
    await scratch.cleanup();
  });

  it("names the change, starts a new generation at once, counts no store error", async () => {
    const store = path.join(scratch.dir, "store");
    const metrics = path.join(scratch.dir, "archive.prom");
    for (let i = 0; i < 10; i++) await appendFile(f.ws.p(LOG), line(i));
    await appendDecisions(f.ws, RUN, 5);
    const { child, done } = spawnCli(
      ["--sdd", f.sdd, "dr", "archive", "--to", store, "--interval", "100ms", "--metrics-file", metrics],
      { env: f.env },
    );
    const status = () => readArchiveStatus(f.ws.root);
    try {
      await waitFor(
        "the base snapshot and a first cycle",
        async () => {
          const s = await status();
          return s !== undefined && s.pid === child.pid && s.caught_up_at !== null;
        },
        { exited: done },
      );
      // Segments after the snapshot: the store holds twelve lines of the log and seq 0..6.
      for (let i = 10; i < 12; i++) await appendFile(f.ws.p(LOG), line(i));
      await appendDecisions(f.ws, RUN, 2, 5);
      const first = await waitFor(
        "the new lines shipped",
        async () => {
          const s = await status();
          return s && s.lag_entries === 0 && s.segments_total >= 2 ? s : undefined;
        },
        { exited: done },
      );

      // The log cut back to its first three lines, then written on.
      const text = await readFile(f.ws.p(LOG), "utf8");
      await truncate(f.ws.p(LOG), Buffer.byteLength(text.split("\n").slice(0, 3).join("\n") + "\n"));
      await appendFile(f.ws.p(LOG), line(100));
      await appendDecisions(f.ws, RUN, 4, 7);
      const after = await newGeneration(f.ws, first.generation, done);
      assert.equal(after.continuity_losses_total, 1, JSON.stringify(after));
      assert.match(
        after.last_continuity_loss?.message ?? "",
        /runs\/agent\.jsonl no longer holds the \d+ bytes/,
      );
      assert.equal(after.errors_total, 0, JSON.stringify(after));
      assert.equal(after.state, "ok");
      assert.match(
        await readFile(metrics, "utf8"),
        /^bernstein_archive_continuity_losses_total\{[^}]*\} 1$/m,
      );

      const shown = await f.cli(["dr", "status"]);
      assert.match(shown.stdout, /new generation after a change in the workspace at .*runs\/agent\.jsonl/);
    } finally {
      child.kill("SIGINT");
      await done;
    }
    const r = await done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(
      r.stderr,
      /workspace changed under the archiver: runs\/agent\.jsonl no longer holds the \d+ bytes already archived; a new generation starts/,
    );
    assert.doesNotMatch(r.stderr, /store error/);
    assert.match(r.stdout, /stopped: generation \S+, \d+ segment\(s\), 0 error\(s\)/);

    const list = JSON.parse(
      (await f.cli(["--json", "dr", "archive-list", "--from", store, "--check"])).stdout,
    );
    assert.equal(list.generations.length, 2, JSON.stringify(list));
    assert.match(list.generations[1].cause, /runs\/agent\.jsonl no longer holds/);
    // The newest point of the first generation (before the cut), and of the second.
    for (const [point, generation, seq, lines] of [
      [["--at", list.generations[0].latest], list.generations[0].generation, 6, 12],
      [["--latest"], list.generations[1].generation, 10, 4],
    ] as const) {
      const into = path.join(scratch.dir, `restored-${seq}`, ".sdd");
      const back = await f.cli(["--json", "dr", "archive-restore", "--from", store, ...point], into);
      assert.equal(back.code, 0, back.stderr);
      const doc = JSON.parse(back.stdout);
      assert.equal(doc.generation, generation);
      assert.equal(doc.wal[RUN].seq, seq);
      assert.equal((await readFile(path.join(into, LOG), "utf8")).split("\n").length - 1, lines);
    }
  });

  it("ends the generation when a file it holds bytes of is removed, so later points do not bring it back", async () => {
    const g = await archiveFixture(path.join(scratch.dir, "removed"));
    const store = path.join(scratch.dir, "store-removed");
    const OLD = "runs/old.jsonl";
    for (let i = 0; i < 4; i++) await appendFile(g.ws.p(OLD), line(i));
    await appendDecisions(g.ws, RUN, 3);
    const { child, done } = spawnCli(
      ["--sdd", g.sdd, "dr", "archive", "--to", store, "--interval", "100ms"],
      {
        env: g.env,
      },
    );
    const status = () => readArchiveStatus(g.ws.root);
    try {
      const first = await waitFor(
        "the base snapshot and a first cycle",
        async () => {
          const s = await status();
          return s && s.pid === child.pid && s.caught_up_at !== null ? s : undefined;
        },
        { exited: done },
      );
      await unlink(g.ws.p(OLD));
      await appendDecisions(g.ws, RUN, 2, 3);
      const after = await newGeneration(g.ws, first.generation, done);
      assert.equal(after.continuity_losses_total, 1, JSON.stringify(after));
      assert.equal(after.errors_total, 0, JSON.stringify(after));
    } finally {
      child.kill("SIGINT");
      await done;
    }
    const r = await done;
    assert.match(
      r.stderr,
      /workspace changed under the archiver: runs\/old\.jsonl was removed after \d+ bytes of it were archived; a new generation starts/,
    );

    const list = JSON.parse(
      (await g.cli(["--json", "dr", "archive-list", "--from", store, "--check"])).stdout,
    );
    assert.equal(list.generations.length, 2, JSON.stringify(list));
    assert.match(list.generations[1].cause, /runs\/old\.jsonl was removed/);
    // Before the removal the file is there with its four lines; the newest point has no such file.
    const before = path.join(scratch.dir, "removed-before", ".sdd");
    const back = await g.cli(
      ["dr", "archive-restore", "--from", store, "--at", list.generations[0].latest],
      before,
    );
    assert.equal(back.code, 0, back.stderr);
    assert.equal((await readFile(path.join(before, OLD), "utf8")).split("\n").length - 1, 4);
    const latest = path.join(scratch.dir, "removed-latest", ".sdd");
    const newest = await g.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], latest);
    assert.equal(newest.code, 0, newest.stderr);
    assert.equal(JSON.parse(newest.stdout).wal[RUN].seq, 4);
    await assert.rejects(access(path.join(latest, OLD)), { code: "ENOENT" });
  });

  it("a generation record deleted from the store: an error, then a new generation that restores", async () => {
    const g = await archiveFixture(path.join(scratch.dir, "record-lost"));
    const store = path.join(scratch.dir, "store-record-lost");
    const metrics = path.join(scratch.dir, "record-lost.prom");
    await appendDecisions(g.ws, RUN, 3);
    // Snapshots every second: the record is looked for before each.
    const { child, done } = spawnCli(
      [
        "--sdd",
        g.sdd,
        "dr",
        "archive",
        "--to",
        store,
        "--interval",
        "100ms",
        "--snapshot-interval",
        "1s",
        "--metrics-file",
        metrics,
      ],
      { env: g.env },
    );
    const status = () => readArchiveStatus(g.ws.root);
    let lost: string;
    try {
      const first = await waitFor(
        "the base snapshot and a first cycle",
        async () => {
          const s = await status();
          return s && s.pid === child.pid && s.caught_up_at !== null ? s : undefined;
        },
        { exited: done },
      );
      lost = first.generation!;
      await unlink(path.join(store, generationKey(lost)));
      await appendDecisions(g.ws, RUN, 2, 3);
      const after = await waitFor(
        "a new generation",
        async () => {
          const s = await status();
          return s && s.generation !== lost && s.errors_total > 0 && s.lag_entries === 0 ? s : undefined;
        },
        { exited: done },
      );
      assert.match(after.last_error ?? "", /record .*gen-\S+\.json is missing from the store/);
      assert.match(await readFile(metrics, "utf8"), /^bernstein_archive_errors_total\{[^}]*\} 1$/m);
      const shown = JSON.parse((await g.cli(["--json", "dr", "status"])).stdout).archive;
      assert.match(shown.last_error, /is missing from the store/);
      assert.ok(
        Date.parse(shown.window_start_at) > Date.parse(first.window_start_at!),
        JSON.stringify(shown),
      );
    } finally {
      child.kill("SIGINT");
      await done;
    }
    const r = await done;
    assert.match(r.stderr, /store error .*: generation \S+: its record .* is missing from the store/);

    const list = JSON.parse((await g.cli(["--json", "dr", "archive-list", "--from", store])).stdout);
    const newest = list.generations[list.generations.length - 1];
    assert.notEqual(newest.generation, lost);
    assert.match(newest.cause, /is missing from the store/);
    const into = path.join(scratch.dir, "record-lost-latest", ".sdd");
    const back = await g.cli(["--json", "dr", "archive-restore", "--from", store, "--latest"], into);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(JSON.parse(back.stdout).wal[RUN].seq, 4);
  });
});
