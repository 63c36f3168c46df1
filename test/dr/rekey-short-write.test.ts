/**
 * `dr rekey` under a file-size limit (`ulimit -f`, RLIMIT_FSIZE) smaller than the archive: the
 * write that crosses the limit writes only part of what it was given and reports it only in its
 * count, the next one fails with EFBIG (Node ignores SIGXFSZ). Every rewrite of an archive (a
 * `.enc` re-encrypted, an `.age` header copied with its payload) fails with one line, exit 6, and
 * leaves the folder as it was; the old key still opens the archive.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { backupToFile } from "../../src/dr/backup.js";
import { ExitCode } from "../../src/errors/errors.js";
import { CLI_ARGV, cliEnv, envFor, runCli, scratchDir, type CliResult } from "../helpers.js";
import { makeSmallWorkspace } from "./support/workspace.js";

/** The limit, in bash's 1 KiB blocks: a fraction of the ~400 KB archives, on no chunk boundary. */
const LIMIT_KIB = 150;

/** bin/bernstein in a bash child whose file-size limit is LIMIT_KIB. */
function runLimited(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "bash",
      ["-c", `ulimit -f ${LIMIT_KIB} && exec "$@"`, "bash", process.execPath, ...CLI_ARGV, ...args],
      { env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Every file of `dir` and its bytes. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const f of (await readdir(dir)).sort()) out.set(f, await readFile(path.join(dir, f)));
  return out;
}

function assertRefused(r: CliResult, name: string): void {
  assert.equal(r.code, ExitCode.IO, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(`^bernstein: cannot write .*${name.replace(/\./g, "\\.")}.*: file too large \\(`, "m"),
  );
}

test("dr rekey of a .enc archive past the file-size limit: exit 6, one line, the archive and its sidecar unchanged", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-rekey-fsize-");
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 400_000 });
    const disk = path.join(dir, "disk");
    await mkdir(disk);
    const b = await backupToFile(ws, path.join(disk, "bk.tar.gz"), { password: "old-pass-1" });
    assert.ok(b.size_bytes > 2 * LIMIT_KIB * 1024, `${b.size_bytes} bytes`);
    const old = path.join(dir, "old.pw");
    await writeFile(old, "old-pass-1\n", { mode: 0o600 });
    const neu = path.join(dir, "new.pw");
    await writeFile(neu, "new-pass-2\n", { mode: 0o600 });
    const before = await snapshot(disk);

    const r = await runLimited(
      ["dr", "rekey", "--from", b.path, "--password-file", old, "--new-password-file", neu],
      env,
    );
    assertRefused(r, "bk.tar.gz.enc");
    assert.deepEqual(await snapshot(disk), before, "the folder is as it was");
    const v = await runCli(["dr", "verify", "--from", b.path, "--password-file", old], { env });
    assert.equal(v.code, 0, v.stderr);
  } finally {
    await cleanup();
  }
});

test("dr rekey of an .age archive whose new header does not fit (a copy) past the file-size limit: exit 6, one line, the archive unchanged", async () => {
  const { dir, cleanup } = await scratchDir("bernstein-rekey-fsize-");
  try {
    const env = envFor(dir);
    const { ws } = await makeSmallWorkspace(dir, { bigBytes: 400_000 });
    const disk = path.join(dir, "disk");
    await mkdir(disk);
    const a = await generateIdentityLine(false);
    const idA = path.join(dir, "id_a.txt");
    await writeFile(idA, `${a.identity}\n`, { mode: 0o600 });
    const b = await backupToFile(ws, path.join(disk, "ag.tar.gz"), { recipients: [a.recipient] });
    assert.ok(b.size_bytes > 2 * LIMIT_KIB * 1024, `${b.size_bytes} bytes`);
    // Post-quantum stanzas are large: three do not fit in the room a one-recipient header keeps.
    const added: string[] = [];
    for (let i = 0; i < 3; i++) added.push((await generateIdentityLine(true)).recipient);
    const before = await snapshot(disk);

    const r = await runLimited(
      [
        "dr",
        "rekey",
        "--from",
        b.path,
        "--identity-file",
        idA,
        ...added.flatMap((x) => ["--add-recipient", x]),
      ],
      env,
    );
    assertRefused(r, "ag.tar.gz.age");
    assert.deepEqual(await snapshot(disk), before, "the folder is as it was");
    const v = await runCli(["dr", "verify", "--from", b.path, "--identity-file", idA], { env });
    assert.equal(v.code, 0, v.stderr);
  } finally {
    await cleanup();
  }
});
