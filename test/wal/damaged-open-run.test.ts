/**
 * The WAL readers agree with docs/wal.md on a damaged run. On a run a crash left open (no closed
 * marker), every bad line after the newest valid one is a torn tail: `start` cuts it to a sidecar,
 * and wal verify, doctor, status and checkpoint say so and pass (wal verify names the torn tail
 * in a warning and in --json). A bad line with a valid line after it, and any bad line of a
 * closed run, is damage: start and status refuse (9), doctor and wal verify fail (1), checkpoint
 * refuses (9).
 *
 * Each command's verdict is checked from a real process on one torn and one damaged run; the
 * other rows run main() in this process (runMain), except `start`, always a real process.
 */
import assert from "node:assert/strict";
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, runMain, scratchDir } from "../helpers.js";

type Damage = "torn" | "bad-last" | "bad-middle";

/** The WAL file of the one run in `sdd`. */
const walOf = (sdd: string): string => {
  const dir = path.join(sdd, "runtime", "wal");
  return path.join(
    dir,
    readdirSync(dir).find((n) => n.endsWith(".wal.jsonl"))!,
  );
};

/** torn: the last line without its newline; bad-last / bad-middle: a complete line altered. */
function damage(file: string, how: Damage): void {
  const lines = readFileSync(file, "utf8").split("\n").slice(0, -1);
  const alter = (i: number) =>
    (lines[i] = lines[i]!.replace('"actor":"orchestrator"', '"actor":"orchestratoR"'));
  if (how === "torn") return writeFileSync(file, lines.join("\n") + "\n" + lines.at(-1)!.slice(0, 80));
  alter(how === "bad-last" ? lines.length - 1 : 3);
  writeFileSync(file, lines.join("\n") + "\n");
}

test("a damaged WAL: every reader gives the verdict docs/wal.md states", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-damaged-open-run-");
  t.after(cleanup);
  const env = envFor(dir);
  const cli = (sdd: string, ...args: string[]) => runCli(["--sdd", sdd, ...args], { env });
  const main = (sdd: string, ...args: string[]) => runMain(["--sdd", sdd, ...args], { env });
  const closed = path.join(dir, "closed", ".sdd");
  assert.equal((await main(closed, "init")).code, 0);
  for (const n of [1, 2])
    assert.equal((await main(closed, "task", "add", `t${n}`, "--command", "true")).code, 0);
  assert.equal((await cli(closed, "start", "--until-idle")).code, 0);
  rmSync(path.join(closed, "runtime", "checkpoints"), { recursive: true, force: true });
  // As a SIGKILL leaves it: no closed marker, no checkpoint naming the last entries.
  const open = path.join(dir, "open", ".sdd");
  cpSync(closed, open, { recursive: true });
  for (const name of readdirSync(path.join(open, "runtime", "wal")))
    if (name.endsWith(".wal.closed")) rmSync(path.join(open, "runtime", "wal", name));

  const broken = { start: 9, status: 9, doctor: 1, verify: 1, checkpoint: 9 };
  const torn = { start: 0, status: 0, doctor: 0, verify: 0, checkpoint: 0 };
  const table: { base: string; damage: Damage; want: typeof broken; process?: true }[] = [
    { base: open, damage: "torn", want: torn, process: true },
    { base: open, damage: "bad-last", want: torn },
    { base: open, damage: "bad-middle", want: broken, process: true },
    { base: closed, damage: "torn", want: broken },
    { base: closed, damage: "bad-last", want: broken },
  ];
  for (const row of table) {
    const label = `${path.basename(path.dirname(row.base))} run, ${row.damage}`;
    const got: Record<string, number | null> = {};
    const said: string[] = [];
    for (const [name, args] of [
      ["status", ["status"]],
      ["doctor", ["doctor"]],
      ["verify", ["wal", "verify"]],
      ["checkpoint", ["checkpoint"]],
      ["start", ["start", "--until-idle"]],
    ] as const) {
      const sdd = path.join(dir, `${label.replace(/\W+/g, "-")}-${name}`, ".sdd");
      cpSync(row.base, sdd, { recursive: true });
      damage(walOf(sdd), row.damage);
      const exec = row.process || name === "start" ? cli : main;
      const r = await exec(sdd, ...args);
      got[name] = r.code;
      said.push(`${name}: ${r.stdout}${r.stderr}`);
      if (name === "verify" && row.want === torn) {
        assert.match(r.stderr, /torn tail of \d+ bytes after seq \d+ .*`bernstein start` cuts the tail/);
        const json = await exec(sdd, "--json", "wal", "verify");
        const run = (JSON.parse(json.stdout) as { runs: { ok: boolean; torn_tail?: unknown }[] }).runs[0]!;
        assert.equal(run.ok, true);
        assert.ok(run.torn_tail, `${label}: --json names the torn tail`);
      }
    }
    assert.deepEqual(got, row.want, `${label}:\n${said.join("\n")}`);
  }
});
