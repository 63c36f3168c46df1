/**
 * A key the user got wrong is refused before the command says it started: dr restore (from a
 * file and from s3://), restore --dry-run and dr verify of an encrypted archive, with no key, the
 * other kind of key or a wrong one, print the one error line and nothing else on a terminal (no
 * "Restoring ...", no progress bar), exactly one JSON document with --json, and leave no target
 * folder behind. A drill of a WAL archive's point with a wrong identity is that error (exit 4),
 * not a failed drill.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  canRunOnTerminal,
  envFor,
  runCli,
  runCliOnTerminal,
  scratchDir,
  type CliResult,
} from "../helpers.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";
import { makeSmallWorkspace } from "../dr/support/workspace.js";
import { generateIdentityLine } from "../../src/dr/age/keys.js";
import { backupToFile } from "../../src/dr/backup.js";

const BUCKET = "key-checked-first";

describe("a missing or wrong key is the command's only output", () => {
  let h: S3Harness;
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let env: Record<string, string | undefined>;
  let sdd: string;
  let recipient: string;
  const cli = (args: string[]): Promise<CliResult> => runCli(args, { cwd: scratch.dir, env });
  /** Paths absolute: the terminal's command runs in the test's working folder. */
  const at = (name: string): string => (name.startsWith("s3://") ? name : path.join(scratch.dir, name));

  before(async () => {
    h = await startS3Harness({ buckets: [BUCKET] });
    scratch = await scratchDir("bernstein-key-first-");
    env = { ...envFor(scratch.dir), ...h.env, BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "copies") };
    const { ws, keyFile } = await makeSmallWorkspace(path.join(scratch.dir, "src"));
    sdd = ws.root;
    const file = (name: string, text: string) =>
      writeFileSync(path.join(scratch.dir, name), text, { mode: 0o600 });
    file("right.pw", "right\n");
    file("wrong.pw", "wrong\n");
    // The keys and the local archives through the library (how they are made is not what this
    // file checks); the s3:// ones and the WAL archive through the CLI, which uploads them.
    const right = await generateIdentityLine(false);
    file("right.id", `${right.identity}\n`);
    file("wrong.id", `${(await generateIdentityLine(false)).identity}\n`);
    recipient = right.recipient;
    await backupToFile(ws, at("e.tar.gz"), { password: "right", auditKeyPath: keyFile });
    await backupToFile(ws, at("g.tar.gz"), { recipients: [recipient], auditKeyPath: keyFile });
    await backupToFile(ws, at("n.tar.gz"), { password: "right", auditKeyPath: keyFile });
    const backups: string[][] = [
      ["--to", `s3://${BUCKET}/e.tar.gz`, "--encrypt", "--password-file", "right.pw"],
      ["--to", `s3://${BUCKET}/g.tar.gz`, "--recipient", recipient],
    ];
    for (const b of backups) {
      const r = await cli(["--sdd", sdd, "dr", "backup", ...b]);
      assert.equal(r.code, 0, r.stderr);
    }
    // An archive without its .sha256: a wrong password cannot be told from a damaged start.
    const { rmSync } = await import("node:fs");
    rmSync(path.join(scratch.dir, "n.tar.gz.enc.sha256"));
    // A WAL archive encrypted to the identity.
    const a = await cli([
      "--sdd",
      sdd,
      "dr",
      "archive",
      "--to",
      "wal-archive",
      "--recipient",
      recipient,
      "--once",
    ]);
    assert.equal(a.code, 0, a.stderr);
  });
  after(async () => {
    await h?.close();
    await scratch?.cleanup();
  });

  const password = (archive: string, slot: number) => ({
    archive,
    slot,
    copies: 3,
    cases: [
      {
        keys: [] as string[],
        code: 2,
        says: /is encrypted with a password \(Fernet\): pass --password-file FILE or BERNSTEIN_DR_PASSWORD$/m,
      },
      { keys: ["--identity-file", at("right.id")], code: 2, says: /encrypted with a password \(Fernet\)/ },
      { keys: ["--password-file", at("wrong.pw")], code: 4, says: /cannot decrypt .*: wrong password/ },
    ],
  });
  const identity = (archive: string, slot: number) => ({
    archive,
    slot,
    copies: 2,
    cases: [
      { keys: [] as string[], code: 2, says: /is encrypted to age recipients: pass --identity-file/ },
      { keys: ["--password-file", at("right.pw")], code: 2, says: /a password does not open it/ },
      {
        keys: ["--identity-file", at("wrong.id")],
        code: 4,
        says: /cannot decrypt .*: none of the 1 identities opens/,
      },
    ],
  });
  // Built in the tests: the paths are known once before() has run. `slot` numbers the archives
  // of one kind (three Fernet, two age); `copies` is how many there are.
  const archives = () => [
    password("e.tar.gz.enc", 0),
    password("n.tar.gz.enc", 1),
    identity("g.tar.gz.age", 0),
    password(`s3://${BUCKET}/e.tar.gz.enc`, 2),
    identity(`s3://${BUCKET}/g.tar.gz.age`, 1),
  ];
  const commands = (from: string, target: string): string[][] => [
    ["--sdd", target, "dr", "restore", "--from", at(from)],
    ["--sdd", target, "dr", "restore", "--dry-run", "--from", at(from)],
    ["--sdd", sdd, "dr", "verify", "--from", at(from)],
  ];
  /**
   * Every (archive, key case, command) combination is run once, on a terminal or with --json.
   * The key is checked by the archive layer, the same way whichever output form the command has;
   * the form decides only how the error is printed (and, on a terminal, whether "Restoring ..."
   * or a progress bar could come before it). So the two passes share the combinations out: for
   * each kind of archive, key case and command, exactly one archive of that kind goes to --json
   * (slot + case + command = 0 modulo the number of archives of the kind) and the others to the
   * terminal. Each pass thereby sees every command with every key case of both kinds, from a
   * local file and from s3:// alike; without a terminal, --json runs them all.
   */
  const onTerminal = canRunOnTerminal();
  const combinations = (json: boolean) =>
    archives().flatMap((a) =>
      a.cases.flatMap((c, i) =>
        commands(a.archive, path.join(scratch.dir, "target", ".sdd"))
          .map((args, k) => ({ args, c, k }))
          .filter(({ k }) => ((a.slot + i + k) % a.copies === 0) === json || (json && !onTerminal))
          .map(({ args }) => ({ args, c })),
      ),
    );

  it("on a terminal: the error line alone, no target made", { skip: !onTerminal }, async () => {
    const runs = combinations(false);
    assert.equal(runs.length, 27);
    for (const { args, c } of runs) {
      const what = `${[...args, ...c.keys].join(" ")}`;
      const r = await runCliOnTerminal([...args, ...c.keys], { env });
      assert.equal(r.code, c.code, `${what}: ${r.output}`);
      const lines = r.output.split(/\r?\n/).filter((l) => l !== "");
      assert.equal(lines.length, 1, `${what}: one line, nothing said before it:\n${r.output}`);
      assert.match(lines[0]!, /^bernstein: /, what);
      assert.match(lines[0]!, c.says, what);
      assert.ok(!existsSync(path.join(scratch.dir, "target")), `${what}: no target folder`);
    }
  });

  it("with --json: exactly one JSON document, its exit code", async () => {
    const runs = combinations(true);
    assert.equal(runs.length, onTerminal ? 18 : 45);
    for (const { args, c } of runs) {
      const r = await cli(["--json", ...args, ...c.keys]);
      const what = `${[...args, ...c.keys].join(" ")}`;
      assert.equal(r.code, c.code, `${what}: ${r.stderr}`);
      const doc = JSON.parse(r.stdout) as { exit_code: number; error: string };
      assert.equal(doc.exit_code, c.code, what);
      assert.match(doc.error, c.says, what);
      assert.ok(!existsSync(path.join(scratch.dir, "target")), `${what}: no target folder`);
    }
  });

  it("a drill of a WAL archive's point, or of a backup to a recipient, with a wrong identity: exit 4, the error line alone", async () => {
    for (const [json, drill] of [
      [false, ["--from", "wal-archive", "--latest"]],
      [true, ["--from", "wal-archive", "--latest"]],
      [false, ["--recipient", recipient]],
      [true, ["--recipient", recipient]],
    ] as const) {
      const r = await cli([
        "--sdd",
        sdd,
        ...(json ? ["--json"] : []),
        "dr",
        "drill",
        ...drill,
        "--identity-file",
        "wrong.id",
      ]);
      assert.equal(r.code, 4, r.stdout + r.stderr);
      if (json) assert.equal(JSON.parse(r.stdout).exit_code, 4);
      else {
        assert.equal(r.stdout, "");
        assert.match(r.stderr, /^bernstein: .*none of the 1 identities opens this archive.*\n$/);
      }
    }
  });
});
