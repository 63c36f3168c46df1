/**
 * The WAL readers agree on a run that a crash left open (no closed marker), in each of three
 * damages (docs/wal.md): a last line without its newline is a torn tail (no break: start cuts
 * it, the others say so and pass); a complete last line that fails its check, and a bad line in
 * the middle, are damage (start refuses with exit 9 and cuts nothing, status 9, doctor and wal
 * verify 1, wal show and checkpoint refuse). The cut that promotion and a follower make
 * (repairTornTail) follows the same rule.
 */
import assert from "node:assert/strict";
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import { repairTornTail } from "../../src/wal/tail-repair.js";
import { envFor, runCli, scratchDir } from "../helpers.js";

type Damage = "torn" | "bad-last" | "bad-middle";

/** The WAL file of the one run in `sdd`. */
const walOf = (sdd: string): string => {
  const dir = path.join(sdd, "runtime", "wal");
  return path.join(
    dir,
    readdirSync(dir).find((n) => n.endsWith(".wal.jsonl"))!,
  );
};

function damage(file: string, how: Damage): void {
  const lines = readFileSync(file, "utf8").split("\n").slice(0, -1);
  const alter = (i: number) =>
    (lines[i] = lines[i]!.replace('"actor":"orchestrator"', '"actor":"orchestratoR"'));
  if (how === "torn") return writeFileSync(file, lines.join("\n") + "\n" + lines.at(-1)!.slice(0, 80));
  alter(how === "bad-last" ? lines.length - 1 : 3);
  writeFileSync(file, lines.join("\n") + "\n");
}

test("an open run's damaged WAL: every reader gives the same verdict", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-damaged-open-run-");
  t.after(cleanup);
  const env = envFor(dir);
  const cli = (sdd: string, ...args: string[]) => runCli(["--sdd", sdd, ...args], { env });
  const base = path.join(dir, "base", ".sdd");
  assert.equal((await cli(base, "init")).code, 0);
  for (const n of [1, 2])
    assert.equal((await cli(base, "task", "add", `t${n}`, "--command", "true")).code, 0);
  assert.equal((await cli(base, "start", "--until-idle")).code, 0);
  // As a SIGKILL leaves it: no closed marker, no checkpoint naming the last entries.
  for (const name of readdirSync(path.join(base, "runtime", "wal")))
    if (name.endsWith(".wal.closed")) rmSync(path.join(base, "runtime", "wal", name));
  rmSync(path.join(base, "runtime", "checkpoints"), { recursive: true, force: true });

  const broken = { start: 9, status: 9, doctor: 1, verify: 1, show: 5, checkpoint: 9 };
  const table: { damage: Damage; want: typeof broken }[] = [
    { damage: "torn", want: { start: 0, status: 0, doctor: 0, verify: 0, show: 0, checkpoint: 0 } },
    { damage: "bad-last", want: broken },
    { damage: "bad-middle", want: broken },
  ];
  for (const row of table) {
    const fresh = (name: string): string => {
      const sdd = path.join(dir, `${row.damage}-${name}`, ".sdd");
      cpSync(base, sdd, { recursive: true });
      damage(walOf(sdd), row.damage);
      return sdd;
    };
    const got: Record<string, number | null> = {};
    const said: string[] = [];
    for (const [name, args] of [
      ["status", ["status"]],
      ["doctor", ["doctor"]],
      ["verify", ["wal", "verify"]],
      ["show", ["wal", "show"]],
      ["checkpoint", ["checkpoint"]],
      ["start", ["start", "--until-idle"]],
    ] as const) {
      const sdd = fresh(name);
      const before = readFileSync(walOf(sdd));
      const r = await cli(sdd, ...args);
      got[name] = r.code;
      said.push(`${name}: ${r.stdout}${r.stderr}`);
      if (name === "start" && row.damage !== "torn")
        assert.deepEqual(readFileSync(walOf(sdd)), before, `${row.damage}: start cut nothing`);
      if (name === "start" && row.damage === "torn")
        assert.match(r.stderr, /repaired a torn tail \(80 bytes after seq \d+/);
    }
    assert.deepEqual(got, row.want, `${row.damage}:\n${said.join("\n")}`);

    // The cut a promotion or a follower makes.
    const sdd = fresh("repair");
    const file = walOf(sdd);
    const before = readFileSync(file);
    if (row.damage === "torn") assert.equal((await repairTornTail(file, "run"))?.cut_bytes, 80);
    else if (row.damage === "bad-middle") assert.equal(await repairTornTail(file, "run"), undefined);
    else
      await assert.rejects(
        repairTornTail(file, "run"),
        (err: unknown) =>
          err instanceof UserError && err.exitCode === 9 && /not a torn tail/.test(err.message),
      );
    if (row.damage !== "torn") assert.deepEqual(readFileSync(file), before, `${row.damage}: nothing cut`);
  }
});
