/**
 * An option that takes a value took the next option as it: `dr restore --from --dry-run` looked
 * for a backup named `--dry-run`. Every option whose value is a path, URL or name refuses a value
 * that starts with '-' (exit 2, one line naming the option; a path is written ./-x); passwords and
 * free text may start with '-', and a negative number reaches its option's range check.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { InvalidArgumentError, type Command } from "../../src/vendor/commander.js";
import { buildProgram } from "../../src/cli/main.js";
import { runCli } from "../helpers.js";
import { workspaceWithBackup } from "../dr/support/workspace.js";

test("a forgotten value: the next option is refused as the value, nothing is read or written", async (t) => {
  const { dir, env, ws, backup } = await workspaceWithBackup(t, "bernstein-option-like-");
  const before = await readdir(dir);
  const target = path.join(dir, "t");

  for (const [args, line] of [
    [
      ["dr", "restore", "--from", "--dry-run", "--sdd", target],
      "--from --dry-run: needs a path, and this looks like an option; write a path whose name starts with '-' as ./--dry-run; see 'bernstein dr restore --help'",
    ],
    [
      ["dr", "backup", "--sdd", ws.root, "--to-dir", "--local-copy", "c"],
      "--to-dir --local-copy: needs a location, and this looks like an option; write a location whose name starts with '-' as ./--local-copy; see 'bernstein dr backup --help'",
    ],
    [
      ["dr", "restore", "--from", backup, "--generation", "--dry-run", "--sdd", target],
      "--generation --dry-run: needs a value (<id>), and this looks like an option; --generation takes no value that starts with '-'; see 'bernstein dr restore --help'",
    ],
    [
      ["dr", "list", "--from", "s3://b/p", "--endpoint", "--region", "x"],
      "--endpoint --region: needs a value (<url>), and this looks like an option; --endpoint takes no value that starts with '-'; see 'bernstein dr list --help'",
    ],
    [
      ["key", "generate", "-o", "--force"],
      "--output --force: needs a file, and this looks like an option; write a file whose name starts with '-' as ./--force; see 'bernstein key generate --help'",
    ],
    [
      ["stop", "--sdd", ws.root, "--timeout", "-5"],
      "--timeout -5: must be a number >= 0; see 'bernstein stop --help'",
    ],
  ] as const) {
    const r = await runCli([...args], { env, cwd: dir });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr, `bernstein: ${line}\n`);
    assert.equal(r.stdout, "");
  }
  const json = await runCli(["dr", "restore", "--from", "--dry-run", "--sdd", target, "--json"], {
    env,
    cwd: dir,
  });
  assert.equal(json.code, 2);
  const doc = JSON.parse(json.stdout);
  assert.deepEqual([doc.ok, doc.exit_code], [false, 2]);
  assert.match(doc.error, /^--from --dry-run: needs a path, and this looks like an option/);
  assert.deepEqual(await readdir(dir), before, "nothing restored, backed up or created");

  // A file whose name starts with '-', named as the message says; a password may start with '-'.
  const dashed = await runCli(
    ["--sdd", ws.root, "dr", "backup", "--encrypt", "--password", "-pw-", "--to", "./-b.tar.gz.enc"],
    { env, cwd: dir },
  );
  assert.equal(dashed.code, 0, dashed.stderr);
  const back = await runCli(
    ["dr", "verify", "--from", "./-b.tar.gz.enc", "--password", "-pw-", "--sdd", ws.root],
    { env, cwd: dir },
  );
  assert.equal(back.code, 0, back.stderr);
});

test("every option of the tree that takes a path, URL or name refuses an option-like value", async () => {
  const program = await buildProgram([]);
  const freeText = new Set(["--password", "--command", "--prompt", "--goal"]);
  const checked: string[] = [];
  const visit = (cmd: Command): void => {
    for (const o of cmd.options) {
      if (!(o.required || o.optional) || !o.long || freeText.has(o.long)) continue;
      assert.ok(o.parseArg, `${cmd.name()} ${o.flags} has no parser`);
      assert.throws(() => o.parseArg!("--json", undefined), InvalidArgumentError, `${cmd.name()} ${o.flags}`);
      checked.push(o.long);
    }
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
  for (const long of ["--sdd", "--config", "--from", "--to", "--to-dir", "--at", "--endpoint", "--leader"])
    assert.ok(checked.includes(long), long);
  for (const o of program.commands.find((c) => c.name() === "task")!.commands.find((c) => c.name() === "add")!
    .options)
    if (o.long === "--command")
      assert.equal(
        o.parseArg ? o.parseArg("--json", undefined) : "--json",
        "--json",
        "free text is left as given",
      );
});
