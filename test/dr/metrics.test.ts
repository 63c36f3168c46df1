import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli, scratchDir, type CliResult } from "../helpers.js";

/** The samples of a textfile-collector file, checked line by line against node_exporter's text format. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const typed = new Set<string>();
  assert.ok(text.endsWith("\n"), "ends with a newline");
  for (const line of text.trimEnd().split("\n")) {
    const help = /^# HELP (bernstein_backup_[a-z_]+) \S.*$/.exec(line);
    const type = /^# TYPE (bernstein_backup_[a-z_]+) (gauge|counter)$/.exec(line);
    const sample = /^(bernstein_backup_[a-z_]+)\{sdd="[^"]+"\} (-?\d+(?:\.\d+)?)$/.exec(line);
    assert.ok(help || type || sample, `not in the text format: ${line}`);
    if (type) typed.add(type[1]!);
    if (sample) {
      assert.ok(typed.has(sample[1]!), `${sample[1]} has no # TYPE before it`);
      out.set(sample[1]!.slice("bernstein_backup_".length), Number(sample[2]));
    }
  }
  return out;
}

describe("--metrics-file: backup health for Prometheus's textfile collector", () => {
  let scratch: { dir: string; cleanup: () => Promise<void> };
  let project: string;
  let metrics: string;
  const cli = (args: string[]): Promise<CliResult> =>
    runCli(args, { cwd: project, env: { BERNSTEIN_SDD: undefined, BERNSTEIN_DR_PASSWORD: undefined } });

  before(async () => {
    scratch = await scratchDir("bernstein-metrics-");
    project = scratch.dir;
    assert.equal((await cli(["init"])).code, 0);
    await mkdir(path.join(project, "textfile"));
    metrics = path.join(project, "textfile", "bernstein.prom");
  });
  after(() => scratch.cleanup());

  it("a backup writes the file; failures are counted across runs and keep the last success", async () => {
    const before = Math.floor(Date.now() / 1000);
    const ok = await cli([
      "dr",
      "backup",
      "--to",
      path.join(project, "a.tar.gz"),
      "--verify",
      "--metrics-file",
      metrics,
      "--json",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const backup = JSON.parse(ok.stdout) as { size_bytes: number; file_count: number };
    const first = samples(await readFile(metrics, "utf8"));
    assert.equal(first.get("last_size_bytes"), backup.size_bytes);
    assert.equal(first.get("last_file_count"), backup.file_count);
    assert.equal(first.get("last_verified"), 1);
    assert.equal(first.get("last_run_success"), 1);
    assert.equal(first.get("failures_total"), 0);
    assert.ok(first.get("last_success_timestamp_seconds")! >= before);
    assert.ok(first.get("last_duration_seconds")! > 0);

    // Two failed runs (the destination's folder is a file): counted, the success's facts kept.
    await writeFile(path.join(project, "not-a-folder"), "");
    for (const n of [1, 2]) {
      const bad = await cli([
        "dr",
        "backup",
        "--to",
        path.join(project, "not-a-folder", "b.tar.gz"),
        "--metrics-file",
        metrics,
      ]);
      assert.notEqual(bad.code, 0);
      const m = samples(await readFile(metrics, "utf8"));
      assert.equal(m.get("failures_total"), n);
      assert.equal(m.get("last_run_success"), 0);
      assert.equal(m.get("last_success_timestamp_seconds"), first.get("last_success_timestamp_seconds"));
      assert.equal(m.get("last_size_bytes"), backup.size_bytes);
    }

    // A later success: failures stay counted (a counter never goes down), the rest is new.
    const again = await cli([
      "dr",
      "backup",
      "--to",
      path.join(project, "c.tar.gz"),
      "--metrics-file",
      metrics,
    ]);
    assert.equal(again.code, 0, again.stderr);
    const m = samples(await readFile(metrics, "utf8"));
    assert.equal(m.get("failures_total"), 2);
    assert.equal(m.get("last_run_success"), 1);
    assert.equal(m.get("last_verified"), 0, "written without --verify");
    // Atomic replace: no temp file is left beside it for the collector to trip on.
    assert.deepEqual(await readdir(path.join(project, "textfile")), ["bernstein.prom"]);
  });

  it("dr schedule updates it after each run; a metrics folder that does not exist is refused before any backup", async () => {
    const file = path.join(project, "textfile", "schedule.prom");
    const r = await cli([
      "dr",
      "schedule",
      "--every",
      "1h",
      "--to-dir",
      path.join(project, "cat"),
      "--once",
      "--metrics-file",
      file,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const m = samples(await readFile(file, "utf8"));
    assert.equal(m.get("last_run_success"), 1);
    assert.equal(m.get("last_verified"), 1);
    assert.equal(m.get("failures_total"), 0);

    const missing = path.join(project, "no-such-folder", "x.prom");
    for (const args of [
      ["dr", "backup", "--to", path.join(project, "never.tar.gz")],
      ["dr", "schedule", "--every", "1h", "--to-dir", path.join(project, "never"), "--once"],
    ]) {
      const bad = await cli([...args, "--metrics-file", missing]);
      assert.equal(bad.code, 6, bad.stderr);
      assert.match(
        bad.stderr,
        /^bernstein: --metrics-file .*x\.prom: folder .*no-such-folder does not exist\n$/,
      );
    }
    const names = await readdir(project);
    assert.ok(!names.includes("never.tar.gz") && !names.includes("never"), names.join(" "));
  });

  it("dr schedule --print-systemd prints a oneshot service and a timer that systemd accepts", async (t) => {
    const r = await cli([
      "dr",
      "schedule",
      "--every",
      "15m",
      "--to-dir",
      "/srv/backups",
      "--run-as",
      "root",
      "--metrics-file",
      metrics,
      "--print-systemd",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const { systemd } = JSON.parse(r.stdout) as { systemd: { service: string; timer: string } };
    assert.match(systemd.service, /^Type=oneshot$/m);
    assert.match(systemd.service, /^User=root$/m);
    assert.match(
      systemd.service,
      / dr schedule --every 15m --to-dir \/srv\/backups --metrics-file \S+bernstein\.prom --once$/m,
    );
    assert.match(systemd.timer, /^OnUnitActiveSec=15m$/m);
    const units = path.join(project, "units");
    await mkdir(units);
    await writeFile(path.join(units, "bernstein-backup.service"), systemd.service);
    await writeFile(path.join(units, "bernstein-backup.timer"), systemd.timer);
    if (spawnSync("systemd-analyze", ["--version"]).status !== 0) {
      t.skip("systemd-analyze is not installed: the units were not checked by systemd");
      return;
    }
    const verify = spawnSync(
      "systemd-analyze",
      [
        "verify",
        "--man=no",
        path.join(units, "bernstein-backup.service"),
        path.join(units, "bernstein-backup.timer"),
      ],
      { encoding: "utf8" },
    );
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(verify.stderr, "", "systemd-analyze has no complaint");
  });
});
