/**
 * The bad inputs of age archives as a user meets them on the command line (`dr restore`,
 * `dr verify`): one line on stderr, its exit code, nothing written.
 *
 * Each kind of refusal runs as real processes at least once; the keys, the backups refused and
 * the later damage cases (the same exit 5 over other bytes) run main() in this process.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { envFor, runCli, runMain, scratchDir } from "../helpers.js";
import { keyPair } from "./support/age-keys.js";
import { ageDamageCases } from "./support/damage.js";
import { makeSmallWorkspace } from "./support/workspace.js";

test("group-readable identity file, identity for .enc, password for .age: exit 2 with the hint; altered or truncated header or chunk: exit 5; nothing restored", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 300_000 });
    const a = await keyPair(dir, "a.txt", false, "main");
    const pwFile = path.join(dir, "pw.txt");
    await writeFile(pwFile, "correct horse\n", { mode: 0o600 });
    const backup = async (...args: string[]) => {
      const r = await runMain(["dr", "backup", "--sdd", ws.root, "--json", ...args], { env });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).path as string;
    };
    const ageFile = await backup("--to", path.join(dir, "a.tar.gz"), "--recipient", a.recipient);
    const encFile = await backup("--to", path.join(dir, "p.tar.gz"), "--encrypt", "--password-file", pwFile);
    const target = path.join(dir, "restored", ".sdd");
    const refused = async (
      code: number,
      pattern: RegExp,
      args: string[],
      extraEnv = {},
      run: "cli" | "main" = "cli",
    ) => {
      for (const command of ["restore", "verify"]) {
        const r = await (run === "cli" ? runCli : runMain)(["dr", command, ...args, "--sdd", target], {
          env: { ...env, ...extraEnv },
        });
        assert.equal(r.code, code, `${command} ${args.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.match(r.stderr, pattern);
        assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
        assert.equal(existsSync(target), false, "nothing written");
      }
    };

    const loose = path.join(dir, "loose.txt");
    await writeFile(loose, await readFile(a.file));
    await chmod(loose, 0o640);
    const looseMessage = /readable by group or others \(mode 640\); run: chmod 600/;
    await refused(2, looseMessage, ["--from", ageFile, "--identity-file", loose]);
    await refused(2, looseMessage, ["--from", ageFile], { BERNSTEIN_DR_IDENTITY_FILE: loose }, "main");

    await refused(2, /encrypted with a password \(Fernet\), not to age recipients: pass --password-file/, [
      "--from",
      encFile,
      "--identity-file",
      a.file,
    ]);
    await refused(2, /encrypted to age recipients, not with a password: pass --identity-file/, [
      "--from",
      ageFile,
      "--password-file",
      pwFile,
    ]);

    const damaged = path.join(dir, "damaged.tar.gz.age");
    let first = true;
    for (const [what, bytes] of ageDamageCases(await readFile(ageFile))) {
      await writeFile(damaged, bytes);
      const run = first ? "cli" : "main";
      first = false;
      await refused(5, /is damaged|truncated/, ["--from", damaged, "--identity-file", a.file], {}, run).catch(
        (err: Error) => {
          throw new Error(`${what}: ${err.message}`);
        },
      );
    }
  } finally {
    await cleanup();
  }
});
