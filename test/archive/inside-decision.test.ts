/**
 * `dr restore --from ARCHIVE --at TIME` with TIME between a decision's intent and its commit
 * (docs/dr.md): the point holds the intent (the WAL is cut at TIME) but the state is the one of
 * the last commit at or before TIME, as `status --json` shows it between decisions: the same
 * task counts and agents as a restore to the commit before the intent. The open intent is left
 * for `start`, which recovers it as after a crash. Real processes throughout.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { scratchDir } from "../helpers.js";
import { listRuns, readWalEntries } from "../../src/wal/reader.js";
import { entryTimeMs, type WalEntry } from "../../src/wal/entry.js";
import { archiveFixture } from "./support/archive-workspace.js";

/** An entry's instant as the archive cuts at it (its timestamp in whole milliseconds). */
const ms = (e: WalEntry): number => entryTimeMs(e.timestamp);
const iso = (e: WalEntry): string => new Date(ms(e)).toISOString();

test("restore --at an instant inside a decision gives the state of the commit before it; start finishes the decision", async (t) => {
  const scratch = await scratchDir("bernstein-inside-decision-");
  t.after(scratch.cleanup);
  const f = await archiveFixture(scratch.dir);
  const store = path.join(scratch.dir, "store");
  const ok = async (args: string[], sdd?: string) => {
    const r = await f.cli(args, sdd);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
    return r;
  };
  await ok(["task", "add", "t1", "--command", "sleep 0.2"]);
  await ok(["dr", "archive", "--to", store, "--once"]);
  await ok(["start", "--until-idle"]);
  await ok(["dr", "archive", "--to", store, "--once"]);

  const entries: WalEntry[] = [];
  for (const run of await listRuns(f.ws))
    for await (const { entry } of readWalEntries(run.file)) entries.push(entry);
  // Intents in a millisecond of their own, after the commit before them and before whatever
  // follows them (their own commit included): the cut at their instant holds them and nothing
  // after. (Any later commit in a later millisecond was not enough: a commit in the intent's own
  // millisecond is inside that cut.)
  const inside = entries.filter(
    (e, i) =>
      !e.committed &&
      i > 0 &&
      entries[i - 1]!.committed &&
      ms(e) > ms(entries[i - 1]!) &&
      i + 1 < entries.length &&
      ms(entries[i + 1]!) > ms(e),
  );
  assert.ok(inside.length > 0, "a decision with an instant between its intent and its commit");
  const state = async (sdd: string) => {
    const s = JSON.parse((await ok(["--json", "status"], sdd)).stdout) as {
      tasks: Record<string, number>;
      agents_recorded: number;
      cost_usd: number;
      integrity: unknown[];
    };
    return {
      tasks: s.tasks,
      agents_recorded: s.agents_recorded,
      cost_usd: s.cost_usd,
      integrity: s.integrity,
    };
  };
  for (const intent of inside) {
    const before = entries[intent.seq - 1]!;
    const at = (name: string) => path.join(scratch.dir, `${intent.decision_type}-${name}`, ".sdd");
    await ok(["dr", "restore", "--from", store, "--at", iso(intent)], at("intent"));
    await ok(["dr", "restore", "--from", store, "--at", iso(before)], at("before"));
    assert.deepEqual(await state(at("intent")), await state(at("before")), `inside ${intent.decision_type}`);
    const shown = (await ok(["wal", "show", "--uncommitted"], at("intent"))).stdout;
    assert.match(shown, new RegExp(`^${intent.seq}\\t.*\\tintent\\t${intent.decision_type}\\t`, "m"));
    await ok(["doctor"], at("intent"));
  }
  // start on the point inside the last decision finishes the backlog: every task done once.
  const last = inside.at(-1)!;
  const target = path.join(scratch.dir, `${last.decision_type}-intent`, ".sdd");
  await ok(["start", "--until-idle"], target);
  const after = await state(target);
  assert.equal(after.tasks.done, 1, JSON.stringify(after));
  assert.equal(after.tasks.open + after.tasks.claimed, 0, JSON.stringify(after));
});
