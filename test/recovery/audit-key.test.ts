/**
 * Who may create the audit key: the first writer of an empty audit log, nobody once the log has
 * entries. A command run where the key is not found (another HOME, an unset variable) goes on
 * without its audit event and says why, instead of minting a key that breaks the chain.
 *
 * Every command whose warning (or refusal) is checked runs as a real process; setting up a
 * workspace and the checks repeated after a real run of the same command (audit verify, a
 * second backup or checkpoint with the right key) run main() in this process (runMain).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { replicationAuditor } from "../../src/replication/audit.js";
import { Workspace } from "../../src/workspace/layout.js";
import { runCli, runMain, scratchDir } from "../helpers.js";

/** Every audit entry of a workspace, in file order. */
function auditLines(sdd: string): string[] {
  const dir = path.join(sdd, "audit");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith(".jsonl"))
    .sort()
    .flatMap((n) => readFileSync(path.join(dir, n), "utf8").split("\n").filter(Boolean));
}

test("with entries in the audit log and no key found, backup, encrypted backup, drill, schedule, checkpoint and start go on without their event, warn in one line, and mint no key", async () => {
  const { dir, cleanup } = await scratchDir();
  try {
    const sdd = path.join(dir, ".sdd");
    const key = path.join(dir, "key", "audit.key");
    const base = { BERNSTEIN_SDD: sdd, BERNSTEIN_DR_PASSWORD: undefined, XDG_STATE_HOME: undefined };
    const withKey = { ...base, BERNSTEIN_AUDIT_KEY_PATH: key, HOME: dir };
    const otherHome = path.join(dir, "other-home");
    await mkdir(otherHome);
    const elsewhere = { ...base, BERNSTEIN_AUDIT_KEY_PATH: undefined, HOME: otherHome };
    const wouldBeMinted = path.join(otherHome, ".local", "state", "bernstein", "audit.key");

    assert.equal((await runMain(["init"], { env: withKey })).code, 0);
    // The first writer of an empty log creates the key: that starts the chain.
    const first = await runCli(["dr", "backup", "--to", path.join(dir, "b0.tar.gz")], { env: withKey });
    assert.equal(first.code, 0, first.stderr);
    assert.ok(existsSync(key), "the first audit event created the key");
    assert.equal(auditLines(sdd).length, 1);

    const task = await runMain(["task", "add", "t", "--id", "t-1", "--command", "true"], { env: elsewhere });
    assert.equal(task.code, 0, task.stderr);
    const runs: { name: string; args: string[]; env?: Record<string, string | undefined>; says?: RegExp }[] =
      [
        { name: "backup", args: ["dr", "backup", "--to", path.join(dir, "b1.tar.gz")] },
        {
          name: "encrypted backup",
          args: ["dr", "backup", "--to", path.join(dir, "b2.tar.gz"), "--encrypt"],
          env: { BERNSTEIN_DR_PASSWORD: "pw" },
          // It carries no key rather than a wrong one, and says so.
          says: /^warning: the encrypted backup does not carry the audit key: none found at /m,
        },
        { name: "drill", args: ["dr", "drill"] },
        {
          name: "schedule",
          args: ["dr", "schedule", "--every", "1h", "--to-dir", path.join(dir, "cat"), "--once"],
        },
        { name: "checkpoint", args: ["checkpoint"] },
        { name: "start", args: ["start", "--until-idle"] },
      ];
    for (const run of runs) {
      const r = await runCli(run.args, { env: { ...elsewhere, ...run.env } });
      assert.equal(r.code, 0, `${run.name}: ${r.stdout}${r.stderr}`);
      const warnings = r.stderr.split("\n").filter((l) => /no audit key at/.test(l));
      assert.equal(warnings.length, 1, `${run.name}: one warning line, got:\n${r.stderr}`);
      assert.match(
        warnings[0]!,
        new RegExp(
          `no audit key at ${wouldBeMinted.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(resolved from \\$HOME\\) and the audit log already has entries: a new key would break its chain, so none was created; point at the workspace's key with (--key-file FILE or )?BERNSTEIN_AUDIT_KEY_PATH=FILE`,
        ),
        run.name,
      );
      if (run.says) assert.match(r.stderr, run.says, run.name);
      assert.equal(existsSync(wouldBeMinted), false, `${run.name} minted a key`);
      assert.equal(auditLines(sdd).length, 1, `${run.name} appended to the chain`);
    }
    assert.ok(existsSync(path.join(dir, "b1.tar.gz")) && existsSync(path.join(dir, "b2.tar.gz.enc")));
    assert.equal(readdirSync(path.join(sdd, "backlog", "done")).length, 1, "start ran the task");

    // The encrypted backup carries no key rather than a wrong one, and verifies.
    const v = await runCli(["dr", "verify", "--from", path.join(dir, "b2.tar.gz.enc"), "--json"], {
      env: { ...elsewhere, BERNSTEIN_DR_PASSWORD: "pw" },
    });
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(JSON.parse(v.stdout).ok, true);

    // The chain is intact with the real key; pointing at it records events again.
    const ok = await runMain(["audit", "verify", "--json"], { env: withKey });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(JSON.parse(ok.stdout).entries, 1);
    const again = await runMain(["dr", "backup", "--to", path.join(dir, "b3.tar.gz")], { env: withKey });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /no audit key/);
    assert.equal(auditLines(sdd).length, 2);
    assert.equal((await runMain(["audit", "verify"], { env: withKey })).code, 0);
  } finally {
    await cleanup();
  }
});

test("replication's audit events (degraded, restored) are skipped with one warning when the key is missing, and create no key", async () => {
  const { dir, cleanup } = await scratchDir();
  const saved = { key: process.env.BERNSTEIN_AUDIT_KEY_PATH, xdg: process.env.XDG_STATE_HOME };
  try {
    const sdd = path.join(dir, ".sdd");
    const key = path.join(dir, "key", "audit.key");
    const env = { BERNSTEIN_SDD: sdd, BERNSTEIN_AUDIT_KEY_PATH: key, HOME: dir, XDG_STATE_HOME: undefined };
    assert.equal((await runMain(["init"], { env })).code, 0);
    assert.equal((await runMain(["dr", "backup", "--to", path.join(dir, "b.tar.gz")], { env })).code, 0);
    assert.equal(auditLines(sdd).length, 1);

    const missing = path.join(dir, "nowhere", "audit.key");
    process.env.BERNSTEIN_AUDIT_KEY_PATH = missing;
    delete process.env.XDG_STATE_HOME;
    const warnings: string[] = [];
    const audit = replicationAuditor(new Workspace(sdd), { warn: (l) => warnings.push(l) });
    await audit("replication_degraded", { policy: "QUORUM", reason: "ack timeout" });
    await audit("replication_restored", { policy: "QUORUM" });
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(
      warnings[0]!,
      /^replication audit events are skipped: no audit key at .*nowhere\/audit\.key/,
    );
    assert.equal(existsSync(missing), false);
    assert.equal(auditLines(sdd).length, 1);

    // With the key, the events are recorded and continue the chain.
    process.env.BERNSTEIN_AUDIT_KEY_PATH = key;
    await replicationAuditor(new Workspace(sdd))("replication_restored", { policy: "QUORUM" });
    assert.equal(auditLines(sdd).length, 2);
    assert.equal((await runMain(["audit", "verify"], { env })).code, 0);
  } finally {
    if (saved.key === undefined) delete process.env.BERNSTEIN_AUDIT_KEY_PATH;
    else process.env.BERNSTEIN_AUDIT_KEY_PATH = saved.key;
    if (saved.xdg !== undefined) process.env.XDG_STATE_HOME = saved.xdg;
    await cleanup();
  }
});

test("a key that did not sign the log: writers append nothing and say so in one line; audit verify, doctor and dr verify name the key instead of every entry; an altered last entry does not make the right key look wrong", async () => {
  const { dir, cleanup } = await scratchDir();
  const saved = { key: process.env.BERNSTEIN_AUDIT_KEY_PATH, xdg: process.env.XDG_STATE_HOME };
  try {
    const sdd = path.join(dir, ".sdd");
    const right = path.join(dir, "key", "audit.key");
    const wrong = path.join(dir, "other", "audit.key");
    await mkdir(path.dirname(wrong));
    await writeFile(wrong, "ab".repeat(32) + "\n", { mode: 0o600 });
    const base = { BERNSTEIN_SDD: sdd, HOME: dir, XDG_STATE_HOME: undefined, BERNSTEIN_DR_PASSWORD: "pw" };
    const withRight = { ...base, BERNSTEIN_AUDIT_KEY_PATH: right };
    const withWrong = { ...base, BERNSTEIN_AUDIT_KEY_PATH: wrong };
    assert.equal((await runMain(["init"], { env: withRight })).code, 0);
    assert.equal(
      (await runMain(["dr", "backup", "--to", path.join(dir, "b0.tar.gz")], { env: withRight })).code,
      0,
    );
    assert.equal((await runMain(["checkpoint"], { env: withRight })).code, 0);
    assert.equal(auditLines(sdd).length, 2);
    const before = auditLines(sdd);

    assert.equal(
      (await runMain(["task", "add", "t", "--id", "t-1", "--command", "true"], { env: withWrong })).code,
      0,
    );
    for (const args of [
      ["checkpoint"],
      ["dr", "backup", "--to", path.join(dir, "b1.tar.gz")],
      ["start", "--until-idle"],
    ]) {
      const r = await runCli(args, { env: withWrong });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      const said = r.stderr.split("\n").filter((l) => /signed with another key/.test(l));
      assert.equal(said.length, 1, `${args.join(" ")}: one line, got:\n${r.stderr}`);
      assert.match(
        said[0]!,
        /none of the newest entries of \S*audit verifies with the audit key \S*other\/audit\.key: it was signed with another key, so nothing is appended/,
      );
      assert.deepEqual(auditLines(sdd), before, `${args.join(" ")} appended with the wrong key`);
    }
    process.env.BERNSTEIN_AUDIT_KEY_PATH = wrong;
    delete process.env.XDG_STATE_HOME;
    const warnings: string[] = [];
    await replicationAuditor(new Workspace(sdd), { warn: (l) => warnings.push(l) })(
      "replication_degraded",
      {},
    );
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0]!, /^replication audit events are skipped: none of the newest entries/);
    assert.deepEqual(auditLines(sdd), before);

    const v = await runCli(["audit", "verify"], { env: withWrong });
    assert.equal(v.code, 1, v.stdout + v.stderr);
    assert.doesNotMatch(v.stdout, /HMAC mismatch/);
    assert.match(
      v.stdout,
      /^audit chain BROKEN: none of the 2 entries verifies with the audit key \S*other\/audit\.key: the log was signed with another key/m,
    );
    const vj = JSON.parse((await runCli(["audit", "verify", "--json"], { env: withWrong })).stdout);
    assert.equal(vj.signed_with_another_key, true);
    assert.equal(vj.errors.length, 2);
    const doctor = await runCli(["doctor"], { env: withWrong });
    assert.match(doctor.stdout, /^FAIL audit: none of the 2 entries verifies with the audit key/m);
    // An encrypted backup does not carry a key that did not sign the log (its dry-run says so
    // too, with the same count); dr verify with that key names it rather than every entry.
    const b2 = path.join(dir, "b2.tar.gz");
    const dry = await runCli(["dr", "backup", "--to", b2, "--encrypt", "--dry-run"], { env: withWrong });
    assert.match(
      dry.stdout,
      /Audit key: left out: the key at \S*other\/audit\.key did not sign the workspace's audit log/,
    );
    const enc = await runCli(["dr", "backup", "--to", b2, "--encrypt", "--json"], { env: withWrong });
    assert.equal(enc.code, 0, enc.stderr);
    const encDoc = JSON.parse(enc.stdout);
    assert.equal(encDoc.audit_key_included, false);
    assert.equal(encDoc.file_count, Number(/Files: (\d+)/.exec(dry.stdout)![1]));
    assert.ok(
      encDoc.warnings.some((w: string) =>
        /^the encrypted backup does not carry the audit key: the key at \S*other\/audit\.key did not sign/.test(
          w,
        ),
      ),
      encDoc.warnings.join("\n"),
    );
    const dv = await runCli(["dr", "verify", "--from", b2 + ".enc", "--key-file", wrong, "--json"], {
      env: withWrong,
    });
    assert.equal(dv.code, 1, dv.stdout + dv.stderr);
    const audit = JSON.parse(dv.stdout).checks.find((c: { name: string }) => c.name === "audit");
    assert.match(audit.detail, /^none of the 2 entries verifies with the audit key \S*other\/audit\.key/);

    // The right key still verifies and appends after the last entry was altered: one break, named.
    const auditDir = path.join(sdd, "audit");
    const day = readdirSync(auditDir)
      .filter((n) => n.endsWith(".jsonl"))
      .sort()
      .at(-1)!;
    const text = readFileSync(path.join(auditDir, day), "utf8");
    await writeFile(path.join(auditDir, day), text.replace(/"checkpoint\.created"/, '"checkpoint.deleted"'));
    const cp = await runMain(["checkpoint"], { env: withRight });
    assert.equal(cp.code, 0, cp.stderr);
    assert.doesNotMatch(cp.stderr, /another key/);
    assert.equal(auditLines(sdd).length, 3);
    const after = JSON.parse((await runMain(["audit", "verify", "--json"], { env: withRight })).stdout);
    assert.equal(after.signed_with_another_key, false);
    assert.equal(after.errors.length, 1, JSON.stringify(after.errors));
    assert.match(after.errors[0].message, /HMAC mismatch/);
  } finally {
    if (saved.key === undefined) delete process.env.BERNSTEIN_AUDIT_KEY_PATH;
    else process.env.BERNSTEIN_AUDIT_KEY_PATH = saved.key;
    if (saved.xdg !== undefined) process.env.XDG_STATE_HOME = saved.xdg;
    await cleanup();
  }
});
