/**
 * A wrong password (.enc) or an identity that does not open the archive (.age) is reported alike
 * by dr restore, dr verify and dr rekey: one line, the same words (the archive named as given),
 * exit 4, nothing changed.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, scratchDir } from "../helpers.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";

test("wrong password or identity: restore, verify and rekey say the same line, exit 4, the archive unchanged", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-wrong-password-");
  t.after(cleanup);
  const { ws } = await makeSmallWorkspace(path.join(dir, "src"));
  const env = { ...envFor(dir), BERNSTEIN_DR_PASSWORD: "right" };
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runCli(args, { cwd: dir, env: { ...env, ...extra } });
  const enc = await cli(["--sdd", ws.root, "dr", "backup", "--to", "e.tar.gz", "--encrypt"]);
  assert.equal(enc.code, 0, enc.stderr);
  for (const name of ["right.txt", "wrong.txt"])
    assert.equal((await cli(["key", "generate", "-o", name])).code, 0);
  const recipient = (await cli(["key", "recipient", "right.txt"])).stdout.trim();
  assert.equal(
    (await cli(["--sdd", ws.root, "dr", "backup", "--to", "g.tar.gz", "--recipient", recipient])).code,
    0,
  );
  writeFileSync(path.join(dir, "new.pw"), "newer\n", { mode: 0o600 });

  const cases = [
    {
      archive: "e.tar.gz.enc",
      extra: { BERNSTEIN_DR_PASSWORD: "wrong" } as Record<string, string>,
      rekey: ["--new-password-file", "new.pw"],
      keyFlags: [] as string[],
    },
    {
      archive: "g.tar.gz.age",
      extra: {} as Record<string, string>,
      rekey: ["--add-recipient", recipient],
      keyFlags: ["--identity-file", "wrong.txt"],
    },
  ];
  for (const c of cases) {
    const before = readFileSync(path.join(dir, c.archive));
    const lines: string[] = [];
    for (const args of [
      ["--sdd", path.join(dir, "restored", ".sdd"), "dr", "restore", "--from", c.archive],
      ["dr", "verify", "--from", c.archive],
      ["dr", "rekey", "--from", c.archive, ...c.rekey],
    ]) {
      const r = await cli([...args, ...c.keyFlags], c.extra);
      assert.equal(r.code, 4, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      const errors = r.stderr.split("\n").filter((l) => l.startsWith("bernstein: "));
      assert.equal(errors.length, 1, r.stderr);
      lines.push(errors[0]!);
    }
    assert.match(lines[0]!, /^bernstein: cannot decrypt /);
    assert.deepEqual(lines, [lines[0], lines[0], lines[0]], c.archive);
    assert.deepEqual(readFileSync(path.join(dir, c.archive)), before, `${c.archive} unchanged`);
  }
});
