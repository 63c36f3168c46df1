import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli, scratchDir } from "../helpers.js";

function installed(program: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${program}`]).status === 0;
}

function run(program: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(program, args, { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("shell completion and the man page, generated from the command definitions", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  const scripts: Record<string, string> = {};

  before(async () => {
    scratch = await scratchDir("bernstein-completion-");
    for (const shell of ["bash", "zsh", "fish"]) {
      const r = await runCli(["completion", shell]);
      assert.equal(r.code, 0, r.stderr);
      scripts[shell] = path.join(scratch.dir, `bernstein.${shell}`);
      await writeFile(scripts[shell]!, r.stdout);
    }
  });
  after(() => scratch.cleanup());

  it("bash: the script parses, registers itself with complete, and completes commands, options and values", () => {
    assert.equal(run("bash", ["-n", scripts.bash!]).status, 0);
    // A child bash sources the script, asks `complete -p` which function serves bernstein, and
    // calls it as readline would, with COMP_WORDS/COMP_CWORD set.
    const driver = `
      source ${JSON.stringify(scripts.bash)}
      spec=$(complete -p bernstein) || exit 3
      fn=\${spec#*-F }; fn=\${fn%% *}
      ask() {
        COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMP_LINE="$*"; COMP_POINT=\${#COMP_LINE}
        COMPREPLY=(); "$fn" bernstein "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
        echo "\${COMPREPLY[*]}"
      }
      echo "$spec"
      ask bernstein ''
      ask bernstein dr ''
      ask bernstein --sdd /srv/.sdd dr ba
      ask bernstein dr backup --to-
      ask bernstein replicate serve --on-ack-timeout ''
      ask bernstein completion ''
      ask bernstein dr backup --password-file ${JSON.stringify(path.join(scratch.dir, "bernstein.ba"))}
      ask bernstein status --j
    `;
    const r = run("bash", ["--norc", "--noprofile", "-c", driver]);
    assert.equal(r.status, 0, r.stderr);
    const [spec, top, dr, ba, toDash, choices, shells, file, json] = r.stdout.trimEnd().split("\n");
    assert.match(spec!, /^complete -F \S+ bernstein$/);
    for (const word of ["init", "dr", "start", "status", "replicate", "config", "completion", "man"])
      assert.ok(top!.split(" ").includes(word), `${word} in: ${top}`);
    assert.deepEqual(dr!.split(" ").sort(), [
      "archive",
      "archive-compact",
      "archive-list",
      "archive-restore",
      "backup",
      "drill",
      "list",
      "promote",
      "prune",
      "rekey",
      "restore",
      "runbook",
      "schedule",
      "status",
      "verify",
    ]);
    assert.equal(ba, "backup", "--sdd's value is skipped, not taken for a command");
    assert.equal(toDash, "--to-dir");
    assert.equal(choices, "stop degrade");
    assert.equal(shells, "bash zsh fish");
    assert.equal(file, scripts.bash, "an option that takes a file completes file names");
    assert.equal(json, "--json", "the program's options are valid after a sub-command");
  });

  it("zsh: the script parses, registers _bernstein, and its walk finds the command being typed", (t) => {
    if (!installed("zsh")) {
      t.skip("zsh is not installed: its script was not checked");
      return;
    }
    assert.equal(run("zsh", ["-n", scripts.zsh!]).status, 0);
    // _describe and compadd are the completion system's; stand-ins print what they were given,
    // so the script's own logic (the walk, the tables) runs for real.
    const driver = `
      autoload -U compinit && compinit -u -D
      source ${JSON.stringify(scripts.zsh)}
      print -r -- $_comps[bernstein]
      _describe() { print -r -- \${(P)\${@[-1]}} | tr ' ' '\\n' | cut -d: -f1 | tr '\\n' ' '; print }
      compadd() { print -r -- \${(P)2} }
      _files() { print -r -- FILES }
      ask() { words=("$@"); CURRENT=$#words; _bernstein }
      ask bernstein dr ''
      ask bernstein --sdd /srv/.sdd dr backup --to-
      ask bernstein replicate serve --on-ack-timeout ''
      ask bernstein dr backup --to ''
    `;
    const r = run("zsh", ["-f", "-c", driver]);
    assert.equal(r.status, 0, r.stderr);
    const [registered, dr, toDash, choices, file] = r.stdout.trimEnd().split("\n");
    assert.equal(registered, "_bernstein");
    assert.ok(dr!.split(" ").includes("backup") && dr!.split(" ").includes("runbook"), dr);
    assert.match(toDash!, /--to-dir/);
    assert.equal(choices, "stop degrade");
    assert.equal(file, "FILES");
  });

  it("fish: the script parses and `complete -C` completes sub-commands, options and choices", (t) => {
    if (!installed("fish")) {
      t.skip("fish is not installed: its script was not checked");
      return;
    }
    assert.equal(run("fish", ["-n", scripts.fish!]).status, 0);
    const ask = (line: string) => {
      const r = run("fish", [
        "--no-config",
        "-c",
        `source ${scripts.fish}; complete -C ${JSON.stringify(line)}`,
      ]);
      assert.equal(r.status, 0, r.stderr);
      return r.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split("\t")[0]);
    };
    assert.ok(ask("bernstein dr ").includes("schedule"));
    assert.deepEqual(ask("bernstein --sdd x dr ba"), ["backup"]);
    assert.deepEqual(ask("bernstein dr backup --to-"), ["--to-dir"]);
    assert.deepEqual(ask("bernstein completion ").sort(), ["bash", "fish", "zsh"]);
    assert.deepEqual(ask("bernstein replicate serve --on-ack-timeout ").sort(), ["degrade", "stop"]);
  });

  it("an unknown shell is a usage error; --json wraps the script", async () => {
    const bad = await runCli(["completion", "tcsh"]);
    assert.equal(bad.code, 2);
    const json = await runCli(["completion", "bash", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as { ok: boolean; shell: string; script: string };
    assert.equal(doc.shell, "bash");
    assert.match(doc.script, /^complete -F \S+ bernstein$/m);
  });

  it("man: every command and option of --help is on the page, and it renders without a warning", async (t) => {
    const r = await runCli(["man"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\.TH BERNSTEIN 1 /);
    for (const heading of [
      "bernstein dr backup \\[options\\]",
      "bernstein completion <shell>",
      "bernstein config show",
    ])
      assert.match(r.stdout, new RegExp(`^\\.SS ${heading}`, "m"));
    assert.match(r.stdout, /^\\fB\\-\\-metrics\\-file\\fR \\fI<file>\\fR$/m);
    assert.match(r.stdout, /^\.B 4\nwrong password/m);
    const page = path.join(scratch.dir, "bernstein.1");
    await writeFile(page, r.stdout);
    if (installed("groff")) {
      const g = run("groff", ["-man", "-ww", "-z", page]);
      assert.equal(g.status, 0, g.stderr);
      assert.equal(g.stderr, "", "groff has no warning");
    } else t.diagnostic("groff is not installed: the page was not checked for warnings");
    if (!installed("man")) {
      t.skip("man is not installed: the page was not rendered");
      return;
    }
    const rendered = spawnSync("man", ["-l", page], {
      encoding: "utf8",
      env: { ...process.env, MANPAGER: "cat", PAGER: "cat", MANWIDTH: "100" },
    });
    assert.equal(rendered.status, 0, rendered.stderr);
    assert.match(rendered.stdout, /^NAME\n\s+bernstein\s+-\s+Durable\s+state/m);
    assert.match(rendered.stdout, /^ {3}bernstein dr schedule \[options\]$/m);
    assert.match(rendered.stdout, /--print-systemd/);
  });
});
