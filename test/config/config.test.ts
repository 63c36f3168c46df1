import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli, scratchDir, type CliResult } from "../helpers.js";

interface Row {
  key: string;
  value: unknown;
  source: string;
  shadowed_env?: string[];
}

/** Variables the host may have set that would change what these tests see. */
const CLEAN_ENV = {
  BERNSTEIN_SDD: undefined,
  BERNSTEIN_DR_PASSWORD: undefined,
  BERNSTEIN_S3_ENDPOINT: undefined,
  AWS_REGION: undefined,
  AWS_DEFAULT_REGION: undefined,
  BERNSTEIN_REPLICATION_TOKEN: undefined,
};

describe("bernstein.yaml: configuration file, flags over it, config show", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let project: string;
  const cli = (args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> =>
    runCli(args, { cwd: project, env: { ...CLEAN_ENV, ...env } });
  const writeConfig = (text: string, name = "bernstein.yaml") => writeFile(path.join(project, name), text);
  const show = async (args: string[] = [], env: Record<string, string | undefined> = {}) => {
    const r = await cli(["config", "show", "--json", ...args], env);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { config_file: string | null; settings: Row[] };
    return { ...doc, row: (key: string) => doc.settings.find((s) => s.key === key)!, stderr: r.stderr };
  };

  before(async () => {
    scratch = await scratchDir("bernstein-config-");
    project = scratch.dir;
    const init = await cli(["init"]);
    assert.equal(init.code, 0, init.stderr);
    await writeFile(path.join(project, "pw"), "correct horse battery\n", { mode: 0o600 });
  });
  after(() => scratch.cleanup());

  it("without a file every setting is a default, and config show says where it looked", async () => {
    const s = await show();
    assert.equal(s.config_file, null);
    assert.deepEqual(s.row("backup.encrypt"), { key: "backup.encrypt", value: false, source: "default" });
    assert.deepEqual(s.row("s3.retries"), { key: "s3.retries", value: 3, source: "default" });
    // The worktree settings show the values `start` uses, not "-".
    assert.deepEqual(
      [
        "worktrees",
        "merge.strategy",
        "merge.on_conflict",
        "merge.keep_branches",
        "merge.author.name",
        "merge.author.email",
      ].map((k) => [k, s.row(k).value, s.row(k).source]),
      [
        ["worktrees", false, "default"],
        ["merge.strategy", "merge", "default"],
        ["merge.on_conflict", "requeue", "default"],
        ["merge.keep_branches", false, "default"],
        ["merge.author.name", "bernstein", "default"],
        ["merge.author.email", "bernstein@localhost", "default"],
      ],
    );
    assert.equal(s.row("merge.target_branch").value, null, "the branch checked out when the run starts");
    const human = await cli(["config", "show"]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^Configuration file: none \(.*bernstein\.yaml does not exist\)$/m);
    assert.match(human.stdout, /^backup\.destination +- +default$/m);
    assert.match(human.stdout, /^merge\.strategy +merge +default$/m);
    assert.match(human.stdout, /^merge\.target_branch +- +default +\(the branch checked out\)$/m);
  });

  it("values come from the file, a flag, or the environment, and each says which", async () => {
    await writeConfig(
      [
        "backup:",
        "  destination: ./backups",
        "  password_file: pw",
        "  retention:",
        "    keep_daily: 7",
        "    keep_weekly: 4",
        "s3:",
        "  region: eu-west-1",
        "replication:",
        "  followers:",
        "    east: http://east.example:7071",
        "    west: null",
        "",
      ].join("\n"),
    );
    const s = await show([], { AWS_REGION: "us-east-2", BERNSTEIN_S3_ENDPOINT: "http://127.0.0.1:9" });
    assert.equal(s.config_file, path.join(project, "bernstein.yaml"));
    assert.deepEqual(s.row("backup.destination"), {
      key: "backup.destination",
      value: path.join(project, "backups"),
      source: "file",
    });
    // A password source in the file turns encryption on; the password itself is never shown.
    assert.deepEqual(s.row("backup.encrypt"), { key: "backup.encrypt", value: true, source: "file" });
    assert.deepEqual(s.row("backup.password"), {
      key: "backup.password",
      value: `file ${path.join(project, "pw")}`,
      source: "file",
    });
    assert.equal(s.row("backup.retention.keep_daily").value, 7);
    // The environment does not override the file, and says it was not used.
    assert.deepEqual(s.row("s3.region"), {
      key: "s3.region",
      value: "eu-west-1",
      source: "file",
      shadowed_env: ["AWS_REGION"],
    });
    // Where the file is silent, the environment is used.
    assert.deepEqual(s.row("s3.endpoint"), {
      key: "s3.endpoint",
      value: "http://127.0.0.1:9",
      source: "env",
    });
    assert.deepEqual(s.row("replication.followers").value, ["east=http://east.example:7071", "west"]);

    // Flags win; a retention flag replaces the file's whole policy, a --follower its whole list.
    const f = await show(["--keep-last", "2", "--follower", "north=http://north.example:7071", "--plain"]);
    assert.deepEqual(f.row("backup.retention.keep_last"), {
      key: "backup.retention.keep_last",
      value: 2,
      source: "flag",
    });
    assert.equal(f.row("backup.retention.keep_daily").source, "default");
    assert.equal(f.row("backup.retention.keep_daily").value, null);
    assert.deepEqual(f.row("replication.followers"), {
      key: "replication.followers",
      value: ["north=http://north.example:7071"],
      source: "flag",
    });
    assert.deepEqual(f.row("backup.encrypt"), { key: "backup.encrypt", value: false, source: "flag" });
  });

  it("dr backup takes the file's destination and encrypts with its password file; --plain does not", async () => {
    await writeConfig("backup:\n  destination: ./backups\n  password_file: pw\n");
    const r = await cli(["dr", "backup", "--json"], { BERNSTEIN_DR_PASSWORD: "another password" });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { path: string; encrypted: boolean };
    assert.equal(doc.encrypted, true);
    assert.ok(doc.path.startsWith(path.join(project, "backups") + path.sep), doc.path);
    assert.match(doc.path, /\.tar\.gz\.enc$/);
    // The environment's password was not used, and the command said so.
    assert.match(
      r.stderr,
      /^warning: BERNSTEIN_DR_PASSWORD is set but ignored: .*bernstein\.yaml sets backup\.password_file$/m,
    );
    const restore = await cli(["dr", "restore", "--from", doc.path, "--dry-run", "--json"]);
    assert.equal(restore.code, 0, restore.stderr);

    const plain = await cli(["dr", "backup", "--plain", "--json"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal((JSON.parse(plain.stdout) as { encrypted: boolean }).encrypted, false);

    // --to on the command line replaces the file's destination.
    const to = path.join(project, "elsewhere.tar.gz");
    const explicit = await cli(["dr", "backup", "--to", to, "--json"]);
    assert.equal(explicit.code, 0, explicit.stderr);
    assert.equal((JSON.parse(explicit.stdout) as { path: string }).path, `${to}.enc`);

    const both = await cli(["dr", "backup", "--plain", "--encrypt"]);
    assert.equal(both.code, 2);
    assert.equal(both.stderr, "bernstein: --plain and --encrypt contradict each other\n");
  });

  it("explicit recipients with --encrypt or a password are refused (exit 2); configured recipients win over a password flag", async () => {
    const recipient = "age1tasd5tzw38cls0563ax3vxwquusqnt0tx6653zjrgwrmzv5xmfgqtd2ywd";
    const to = path.join(project, "both-keys.tar.gz");
    for (const keys of [
      ["--recipient", recipient, "--encrypt", "--password-file", "pw"],
      ["--recipient", recipient, "--password-file", "pw"],
    ]) {
      const r = await cli(["dr", "backup", "--to", to, ...keys]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        "bernstein: --recipient/--recipients-file (age, .age) and --encrypt/--password/--password-file (Fernet, .enc) contradict each other: give one\n",
      );
    }
    assert.equal((await readdir(project)).filter((n) => n.startsWith("both-keys")).length, 0);
    await writeConfig(`backup:\n  recipients: [${recipient}]\n`);
    const configured = await cli([
      "dr",
      "backup",
      "--to",
      to,
      "--encrypt",
      "--password-file",
      "pw",
      "--json",
    ]);
    assert.equal(configured.code, 0, configured.stderr);
    assert.equal((JSON.parse(configured.stdout) as { path: string }).path, `${to}.age`);
  });

  it("password_env names the variable; unset, an encrypting backup is refused before anything is written", async () => {
    await writeConfig("backup:\n  destination: ./env-backups\n  password_env: MY_BACKUP_PW\n");
    const missing = await cli(["dr", "backup"]);
    assert.equal(missing.code, 2);
    assert.match(
      missing.stderr,
      /^bernstein: .*bernstein\.yaml: backup\.password_env: MY_BACKUP_PW is not set in the environment\n$/,
    );
    await assert.rejects(readdir(path.join(project, "env-backups")), { code: "ENOENT" });
    const ok = await cli(["dr", "backup", "--json"], { MY_BACKUP_PW: "from the environment" });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { encrypted: boolean }).encrypted, true);
    // Never on the command line, so not warned about as one.
    assert.doesNotMatch(ok.stderr, /--password is visible/);
    // The unit names the variable's source, not its value: it is not refused as a --password.
    const unit = await cli(["dr", "schedule", "--every", "1h", "--print-systemd"], {
      MY_BACKUP_PW: "from the environment",
    });
    assert.equal(unit.code, 0, unit.stderr);
    assert.doesNotMatch(unit.stdout, /from the environment/);
    // Printing a unit reads no password, and the unit says where the variable must come from:
    // systemd and cron pass none of the caller's environment.
    const printed = await cli(["dr", "schedule", "--every", "1h", "--print-systemd"]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^# MY_BACKUP_PW \(the backup password\).*\nEnvironmentFile=\S+$/m);
    const cron = await cli(["dr", "schedule", "--every", "1h", "--print-cron"]);
    assert.equal(cron.code, 0, cron.stderr);
    assert.match(cron.stdout, /^# cron passes no environment: MY_BACKUP_PW .*must be set for this line/m);
    const plain = await cli(["dr", "schedule", "--every", "1h", "--plain", "--print-systemd"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /MY_BACKUP_PW|^EnvironmentFile=/m);
  });

  it("dr schedule --print-systemd takes the interval and User= from the file; --config FILE is carried into the unit", async () => {
    const file = path.join(project, "site.yaml");
    await writeConfig(
      "backup:\n  destination: /srv/backups\n  schedule:\n    every: 6h\n    run_as: backup\n",
      "site.yaml",
    );
    const r = await cli(["--config", "site.yaml", "dr", "schedule", "--print-systemd", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const units = (JSON.parse(r.stdout) as { systemd: { service: string; timer: string } }).systemd;
    assert.match(units.service, /^User=backup$/m);
    assert.match(
      units.service,
      new RegExp(
        `^ExecStart=\\S+ --config ${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} --sdd \\S+ dr schedule --once$`,
        "m",
      ),
    );
    assert.match(units.timer, /^OnUnitActiveSec=6h$/m);
  });

  it("a bad file is one line naming the key (exit 2), and nothing runs", async () => {
    const cases: [string, RegExp][] = [
      [
        "backup:\n  retention:\n    keep_dialy: 3\n",
        /: backup\.retention\.keep_dialy: unknown key \(known here: keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly\)$/,
      ],
      [
        "backup:\n  password: hunter2\n",
        /: backup\.password: the password never goes in this file; name a password_file or a password_env$/,
      ],
      [
        "backup:\n  retention:\n    keep_daily: many\n",
        /: backup\.retention\.keep_daily: expected number, received string$/,
      ],
      [
        "backup:\n  schedule:\n    every: soon\n",
        /: backup\.schedule\.every: expected a duration such as 90s/,
      ],
      [
        "backup:\n  encrypt: true\n",
        /: backup\.encrypt: encrypt: true needs recipients, recipients_file, password_file or password_env/,
      ],
      [
        "replication:\n  ack_policy: sometimes\n",
        /: replication\.ack_policy: expected one of "LEADER_ONLY"\|"QUORUM"\|"ALL"$/,
      ],
      ["s3:\n  endpoint: not a url\n", /: s3\.endpoint: /],
      // A URL, but not one an S3 client can reach: refused naming the key, not as if `--endpoint` gave it.
      ["s3:\n  endpoint: minio:9000\n", /bernstein\.yaml: s3\.endpoint: not an http\(s\) URL$/],
      ["backup: [\n", /bernstein\.yaml:\d+: not valid YAML: /],
      ["- just\n- a list\n", /: expected a mapping of settings/],
    ];
    // The file is read and checked once, by the program's hook before any sub-command
    // (installConfigFile -> loadConfig), the same for every command: each file is given to one
    // of the two commands in turn, so each command meets several of the errors (five each) and each
    // error is met once.
    const commands = [
      ["config", "show"],
      ["dr", "backup", "--to", path.join(project, "never.tar.gz")],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      await writeConfig(text);
      const args = commands[i % commands.length]!;
      const r = await cli(args);
      assert.equal(r.code, 2, `${text} ${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.match(r.stderr.trimEnd(), expected);
      assert.equal(r.stdout, "");
    }
    await assert.rejects(readdir(path.join(project, "never.tar.gz")), { code: "ENOENT" });
    // A workspace path under a file: the error is the workspace, not a configuration never named.
    const underFile = await cli(["--sdd", path.join(project, "pw", ".sdd"), "status"]);
    assert.equal(underFile.code, 2, underFile.stderr);
    assert.match(underFile.stderr, /^bernstein: no workspace at .*pw\/\.sdd; /);
    await mkdir(path.join(project, "cfg-dir", "bernstein.yaml"), { recursive: true });
    const folder = await cli(["--sdd", path.join(project, "cfg-dir", ".sdd"), "status"]);
    assert.equal(folder.code, 2, folder.stderr);
    assert.match(
      folder.stderr,
      /^bernstein: .*cfg-dir\/bernstein\.yaml \(the configuration beside \.sdd\): is a folder/,
    );
    const missing = await cli(["--config", "nope.yaml", "config", "show"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^bernstein: --config .*nope\.yaml: no such file\n$/);
    await writeConfig("");
    const empty = await show();
    assert.equal(empty.row("backup.encrypt").source, "default");
  });
});
