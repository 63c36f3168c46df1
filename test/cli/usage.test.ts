/**
 * Usage errors are one line (what was wrong, the closest valid word, where the help is), help
 * pages show the global options, `help A B` is the page of `A B`, `--version --json` is JSON, and
 * renamed flags keep their old spelling as a hidden, noted alias.
 */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { allCommandSpecs, describeCommands } from "../../src/cli/command-tree.js";
import { buildProgram } from "../../src/cli/main.js";
import { secondsOption } from "../../src/cli/number-option.js";
import { MAX_DELAY_MS, MAX_DELAY_S } from "../../src/workspace/timer.js";
import { runCli, runMain, scratchDir } from "../helpers.js";

const ENV = { BERNSTEIN_SDD: undefined, BERNSTEIN_DR_PASSWORD: undefined };

async function usageError(args: string[], how: "process" | "in-process" = "process"): Promise<string> {
  const r = how === "process" ? await runCli(args, { env: ENV }) : await runMain(args, { env: ENV });
  const what = `bernstein ${args.join(" ")}`;
  assert.equal(r.code, 2, `${what}: ${r.stderr}`);
  assert.equal(r.stdout, "", `${what} prints no help page`);
  assert.equal(r.stderr.split("\n").length, 2, `${what}: one line, got ${JSON.stringify(r.stderr)}`);
  return r.stderr;
}

test("a numeric flag past what its user can honour is too large, and the line says the bound", async () => {
  // A seq is exact only as a safe integer; a delay only as far as the timers count it down.
  assert.equal(
    await usageError(["wal", "show", "--from-seq", "99999999999999999999"], "in-process"),
    "bernstein: --from-seq 99999999999999999999: too large: must be at most 9007199254740991; see 'bernstein wal show --help'\n",
  );
  assert.equal(
    await usageError(
      ["task", "add", "t", "--command", "true", "--timeout", "99999999999999999999"],
      "in-process",
    ),
    "bernstein: --timeout 99999999999999999999: too large: must be at most 9007199254740; see 'bernstein task add --help'\n",
  );
  assert.match(
    await usageError(["stop", "--timeout", "1e400"], "in-process"),
    /^bernstein: --timeout 1e400: too large: must be at most 9007199254740; /,
  );
  assert.match(
    await usageError(["start", "--checkpoint-interval", "1e20"], "in-process"),
    /^bernstein: --checkpoint-interval 1e20: too large: must be at most 9007199254740; /,
  );
  assert.match(
    await usageError(["start", "--poll", "9007199254740992"], "in-process"),
    /^bernstein: --poll 9007199254740992: too large: must be at most 9007199254740991; /,
  );
  // The bounds themselves are accepted: what the timers wait, in seconds.
  assert.equal(secondsOption("--timeout", "positive")("9007199254740"), 9007199254740);
  assert.ok(MAX_DELAY_S * 1000 <= MAX_DELAY_MS);
});

test("a usage error is one line: what was wrong, the closest valid word, and which help to read", async () => {
  assert.equal(
    await usageError(["dr", "bakup"]),
    "bernstein: unknown command 'bakup' (did you mean 'backup'?); see 'bernstein dr --help'\n",
  );
  assert.equal(
    await usageError(["stauts"]),
    "bernstein: unknown command 'stauts' (did you mean 'status'?); see 'bernstein --help'\n",
  );
  // The commands a word begins, over the closest by edit distance ('start' is one letter from 'stat').
  assert.equal(
    await usageError(["stat"]),
    "bernstein: unknown command 'stat' (did you mean 'status'?); see 'bernstein --help'\n",
  );
  assert.equal(
    await usageError(["dr", "re"]),
    "bernstein: unknown command 're' (did you mean 'restore' or 'rekey'?); see 'bernstein dr --help'\n",
  );
  assert.equal(
    await usageError(["start", "--max-agents", "0"]),
    "bernstein: --max-agents 0: must be an integer >= 1; see 'bernstein start --help'\n",
  );
  assert.equal(
    await usageError(["dr", "backup", "--to-dri", "x"]),
    "bernstein: unknown option '--to-dri' (did you mean '--to-dir'?); see 'bernstein dr backup --help'\n",
  );
  assert.match(
    await usageError(["dr", "archive"]),
    /^bernstein: required option '--to <location>' not specified; see 'bernstein dr archive --help'\n$/,
  );
  assert.match(
    await usageError(["dr", "list"]),
    /^bernstein: dr list: give --at LOCATION \(the backups there\) or --from LOCATION \(a WAL archive there\)\n$/,
  );
  assert.match(
    await usageError(["task", "add"]),
    /^bernstein: missing required argument 'title'; see 'bernstein task add --help'\n$/,
  );
  // The archive or location given alone, where an option names it.
  assert.equal(
    await usageError(["dr", "restore", "./bk.tar.gz"]),
    "bernstein: too many arguments for 'restore'. Expected 0 arguments but got 1 (did you mean '--from ./bk.tar.gz'?); see 'bernstein dr restore --help'\n",
  );
  assert.match(
    await usageError(["dr", "backup", "./bk.tar.gz"]),
    /\(did you mean '--to \.\/bk\.tar\.gz'\?\)/,
  );
  // (A group that also runs on its own: its sub-command still refuses extra words, as "too many".)
  const extra = await usageError(["checkpoint", "list", "extra"]);
  assert.doesNotMatch(extra, /did you mean/);
  assert.match(extra, /too many arguments for 'list'/);
  // A key flag the command would not use is refused, not ignored.
  assert.match(
    await usageError(["dr", "drill", "--identity-file", "key.txt"]),
    /^bernstein: dr drill: --identity-file opens a drill's backup made to --recipient/,
  );
  // --json: the error is also the one JSON document on stdout.
  const j = await runCli(["dr", "bakup", "--json"], { env: ENV });
  assert.equal(j.code, 2);
  assert.deepEqual(JSON.parse(j.stdout), {
    ok: false,
    error: "unknown command 'bakup' (did you mean 'backup'?); see 'bernstein dr --help'",
    exit_code: 2,
  });
});

test("every command group answers a mistyped sub-command alike: unknown command, the closest one, exit 2", async () => {
  // A typo of each sub-command of each group (the last letter dropped), in groups that run on
  // their own too (`checkpoint` writes one, `checkpoint list` lists).
  const tree = describeCommands(await buildProgram());
  const cases = allCommandSpecs(tree)
    .filter((group) => group.path.length > 0 && group.subcommands.length > 0)
    .flatMap((group) => group.subcommands.map((sub) => ({ group: group.path, word: sub.path.at(-1)! })));
  assert.ok(cases.some((c) => c.group.join(" ") === "checkpoint"));
  // The same code path for every word (commander's unknown command, our one line): main() in
  // this process for them; the words below and the first test's run as real processes.
  for (const { group, word } of cases) {
    const typo = word.slice(0, -1);
    assert.equal(
      await usageError([...group, typo], "in-process"),
      `bernstein: unknown command '${typo}' (did you mean '${word}'?); see 'bernstein ${group.join(" ")} --help'\n`,
    );
  }
  // A word that is close to none: still the unknown command, not "too many arguments".
  assert.equal(
    await usageError(["checkpoint", "zzzzzz"]),
    "bernstein: unknown command 'zzzzzz'; see 'bernstein checkpoint --help'\n",
  );
  // The group's own options still work with it, and its sub-commands still refuse extra words.
  assert.equal(
    await usageError(["checkpoint", "--goal", "g", "lst"]),
    "bernstein: unknown command 'lst' (did you mean 'list'?); see 'bernstein checkpoint --help'\n",
  );
  // Its sub-commands still refuse extra words: `checkpoint list extra`, in the first test.
});

test("sub-command help shows the global options; `help dr backup` is the dr backup page", async () => {
  const page = await runCli(["dr", "backup", "--help"], { env: ENV });
  assert.equal(page.code, 0);
  assert.match(page.stdout, /^Usage: bernstein dr backup \[options\]/);
  const globals = page.stdout.slice(page.stdout.indexOf("Global Options:"));
  for (const flag of ["--sdd <dir>", "--json", "--quiet"]) assert.ok(globals.includes(flag), flag);
  const viaHelp = await runCli(["help", "dr", "backup"], { env: ENV });
  assert.equal(viaHelp.code, 0, viaHelp.stderr);
  assert.equal(viaHelp.stdout, page.stdout);
  const withGlobal = await runCli(["--sdd", "/tmp/x", "help", "dr", "backup"], { env: ENV });
  assert.equal(withGlobal.stdout, page.stdout);
  const group = await runCli(["help", "dr"], { env: ENV });
  assert.match(group.stdout, /^Usage: bernstein dr \[options\] \[command\]/);
});

test("help for a word that names no command is that usage error, not the parent's page", async () => {
  for (const args of [
    ["statu", "--help"],
    ["help", "statu"],
    ["--sdd", "/tmp/x", "help", "statu"],
  ]) {
    assert.equal(
      await usageError(args),
      "bernstein: unknown command 'statu' (did you mean 'status'?); see 'bernstein --help'\n",
    );
  }
  for (const args of [
    ["dr", "bakup", "--help"],
    ["help", "dr", "bakup"],
    ["dr", "-h", "bakup"],
  ]) {
    assert.equal(
      await usageError(args),
      "bernstein: unknown command 'bakup' (did you mean 'backup'?); see 'bernstein dr --help'\n",
    );
  }
  // A known command's page is unchanged, whatever follows its words.
  const page = await runCli(["dr", "backup", "--to", "x", "--help"], { env: ENV });
  assert.equal(page.code, 0);
  assert.match(page.stdout, /^Usage: bernstein dr backup \[options\]/);
});

test("help pages show the defaults of duration and size flags as they are written, not in ms or bytes", async () => {
  const archive = (await runCli(["dr", "archive", "--help"], { env: ENV })).stdout.replace(/\s+/g, " ");
  assert.match(archive, /--interval <duration> ship new durable bytes this often \(default: 1s\)/);
  assert.match(
    archive,
    /--snapshot-interval <duration> take a new base snapshot this often \(default: 24h\)/,
  );
  assert.match(archive, /--compact-target-size <size> .* up to this size \(default: 8MiB\)/);
  const compact = (await runCli(["dr", "archive-compact", "--help"], { env: ENV })).stdout;
  assert.match(compact.replace(/\s+/g, " "), /are left alone \(default: 8MiB\)/);
});

test("with --json, help is one JSON document on stdout: the page's usage, options and commands", async () => {
  // The page wraps long lines.
  const words = (text: string) => text.replace(/\s+/g, " ");
  const page = words((await runCli(["dr", "backup", "--help"], { env: ENV })).stdout);
  for (const args of [
    ["--json", "help", "dr", "backup"],
    ["dr", "backup", "--help", "--json"],
    ["help", "dr", "backup", "--json"],
  ]) {
    const r = await runCli(args, { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.command, "bernstein dr backup");
    assert.equal(doc.usage, "bernstein dr backup [options]");
    assert.ok(page.includes(words(doc.description)), "the page's description");
    const to = doc.options.find((o: { flags: string }) => o.flags === "--to <path>");
    assert.ok(to && page.includes(words(to.description)), "each option as the page has it");
    assert.ok(doc.global_options.some((o: { flags: string }) => o.flags === "--json"));
    assert.deepEqual(doc.commands, []);
  }
  const root = await runCli(["--json", "help"], { env: ENV });
  assert.equal(root.code, 0);
  const doc = JSON.parse(root.stdout);
  assert.equal(doc.command, "bernstein");
  assert.ok(doc.commands.some((c: { name: string }) => c.name.startsWith("dr")));
  assert.equal(root.stderr, "");
});

test("a single-value option given twice with different values is a usage error; the same value and repeatable options are not", async () => {
  assert.equal(
    await usageError(["dr", "backup", "--to", "a.tar.gz", "--to", "b.tar.gz"]),
    "bernstein: --to given twice with different values; give it once; see 'bernstein dr backup --help'\n",
  );
  assert.equal(
    await usageError(
      ["dr", "restore", "--password-file", "x", "--password-file", "y", "--from", "z"],
      "in-process",
    ),
    "bernstein: --password-file given twice with different values; give it once; see 'bernstein dr restore --help'\n",
  );
  assert.equal(
    await usageError(["--sdd", "a", "status", "--sdd", "b"], "in-process"),
    "bernstein: --sdd given twice with different values; give it once; see 'bernstein --help'\n",
  );
  // The old spelling of a renamed flag is the same option.
  assert.match(
    await usageError(["replicate", "follow", "--follower-name", "a", "--region", "b"], "in-process"),
    /^bernstein: --follower-name given twice with different values; give it once; /,
  );
  const json = await runCli(["--json", "dr", "backup", "--to", "a", "--to", "b"], { env: ENV });
  assert.equal(json.code, 2);
  assert.deepEqual(JSON.parse(json.stdout), {
    ok: false,
    error: "--to given twice with different values; give it once; see 'bernstein dr backup --help'",
    exit_code: 2,
  });

  const { dir, cleanup } = await scratchDir("bernstein-twice-");
  try {
    const sdd = path.join(dir, ".sdd");
    assert.equal((await runCli(["--sdd", sdd, "init"], { env: ENV })).code, 0);
    for (const id of ["a", "b"])
      assert.equal(
        (await runCli(["--sdd", sdd, "task", "add", id, "--command", "true", "--id", id])).code,
        0,
      );
    const r = await runCli(
      ["--sdd", sdd, "--sdd", sdd, "task", "add", "c", "--command", "true", "--id", "c"].concat([
        "--depends-on",
        "a",
        "--depends-on",
        "b",
        "--timeout",
        "5",
        "--timeout",
        "5.0",
      ]),
      { env: ENV },
    );
    assert.equal(r.code, 0, r.stderr);
    const file = await readFile(path.join(sdd, "backlog/open/c.md"), "utf8");
    assert.match(file, /^depends_on:\n {2}- a\n {2}- b$/m);
    assert.match(file, /^timeout_s: 5$/m);
  } finally {
    await cleanup();
  }
});

test("--version prints the version; with --json one JSON document", async () => {
  const plain = await runCli(["--version"], { env: ENV });
  assert.equal(plain.code, 0);
  assert.match(plain.stdout, /^\d+\.\d+\.\d+\S*\n$/);
  for (const args of [
    ["--version", "--json"],
    ["--json", "--version"],
  ]) {
    const j = await runCli(args, { env: ENV });
    assert.equal(j.code, 0);
    assert.deepEqual(JSON.parse(j.stdout), { ok: true, name: "bernstein", version: plain.stdout.trim() });
  }
});

test("renamed replication flags: the new names in the help, the old ones hidden, still working, with a note", async (t) => {
  const follow = (await runCli(["replicate", "follow", "--help"], { env: ENV })).stdout;
  assert.match(follow, /--follower-name <name>/);
  assert.match(follow, /--unreachable-after <n>/);
  assert.doesNotMatch(follow, /--region|--max-retries/);
  const start = (await runCli(["start", "--help"], { env: ENV })).stdout;
  assert.match(start, /--unreachable-after <n>/);
  assert.doesNotMatch(start, /--max-retries/);

  // The old spelling reaches the new option: its value is checked under the new name.
  const old = await runCli(
    [
      "replicate",
      "follow",
      "--leader",
      "http://127.0.0.1:1",
      "--region",
      "bad name",
      "--sdd",
      "/nonexistent",
    ],
    { env: ENV },
  );
  assert.equal(old.code, 2);
  assert.equal(
    old.stderr,
    "bernstein: note: --region is deprecated for 'follow'; use --follower-name\n" +
      "bernstein: --follower-name bad name: letters, digits, . _ - only\n",
  );
  const quiet = await runCli(
    ["--quiet", "replicate", "follow", "--leader", "http://127.0.0.1:1", "--region", "bad name"],
    { env: ENV },
  );
  assert.equal(quiet.stderr, "bernstein: --follower-name bad name: letters, digits, . _ - only\n");

  const { dir, cleanup } = await scratchDir("bernstein-usage-");
  t.after(cleanup);
  const env = { ...ENV, HOME: dir, BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "key", "audit.key") };
  assert.equal((await runCli(["init"], { cwd: dir, env })).code, 0);
  const s = await runCli(["start", "--until-idle", "--max-retries", "5"], { cwd: dir, env });
  assert.equal(s.code, 0, s.stderr);
  assert.match(
    s.stderr,
    /^bernstein: note: --max-retries is deprecated for 'start'; use --unreachable-after$/m,
  );
  const bad = await runCli(["start", "--until-idle", "--max-retries", "x"], { cwd: dir, env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--unreachable-after x: expected a non-negative integer/);
  // A malformed address is named by the flag that gave it.
  const listen = await runCli(["start", "--until-idle", "--replication-listen", "nope"], { cwd: dir, env });
  assert.equal(listen.code, 2);
  assert.equal(
    listen.stderr,
    "bernstein: --replication-listen nope: expected HOST:PORT (e.g. 127.0.0.1:7070)\n",
  );
});

test("replication followers and peers are checked where they are given: exit 2, one line, nothing started", async (t) => {
  const { dir, cleanup } = await scratchDir("bernstein-usage-peers-");
  t.after(cleanup);
  const env = {
    ...ENV,
    HOME: dir,
    BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "key", "audit.key"),
    BERNSTEIN_REPLICATION_TOKEN: "0123456789abcdef0123456789",
  };
  assert.equal((await runCli(["init"], { cwd: dir, env })).code, 0);
  const refused = async (args: string[]): Promise<string> => {
    const r = await runCli(args, { cwd: dir, env });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.split("\n").length, 2, `one line: ${r.stderr}`);
    return r.stderr;
  };
  const start = ["start", "--until-idle", "--replication-listen", "127.0.0.1:0"];
  // A name given twice would count once: ALL over "f1 f1" is met by one follower.
  assert.equal(
    await refused([...start, "--ack-policy", "ALL", "--follower", "f1", "--follower", "f1"]),
    "bernstein: --follower f1 is given twice: each configured follower needs its own name\n",
  );
  assert.equal(
    await refused([...start, "--follower", "f1=notaurl"]),
    "bernstein: --follower f1=notaurl: expected a URL http(s)://HOST:PORT\n",
  );
  assert.match(
    await refused([...start, "--follower", "=http://x:1"]),
    /^bernstein: --follower =http:\/\/x:1: expected NAME or NAME=URL/,
  );
  assert.equal(
    await refused([...start, "--ack-policy", "QUORUM"]),
    "bernstein: --ack-policy QUORUM needs at least one --follower\n",
  );
  // dr promote announces --new-leader-url to the peers it fences: the same check, before anything.
  assert.equal(
    await refused(["dr", "promote", "--force", "--new-leader-url", "foo"]),
    "bernstein: --new-leader-url foo: expected a URL http(s)://HOST:PORT\n",
  );
  assert.deepEqual(await readdir(path.join(dir, ".sdd", "runtime", "wal")), [], "no run was started");
  assert.equal(
    await readFile(path.join(dir, ".sdd", "runtime", "replication", "epoch.json")).catch(() => null),
    null,
    "no epoch was raised",
  );
});
