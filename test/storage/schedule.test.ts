import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UserError } from "../../src/errors/errors.js";
import {
  cronLine,
  cronSpec,
  formatDuration,
  parseDuration,
  runLoop,
  systemdUnits,
} from "../../src/storage/schedule.js";

describe("schedule", () => {
  it("parses durations", () => {
    assert.equal(parseDuration("90s"), 90_000);
    assert.equal(parseDuration("15m"), 900_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("1d"), 86_400_000);
    assert.equal(parseDuration("2w"), 14 * 86_400_000);
    for (const bad of ["", "1", "h", "1x", "0s", "1h 30", "-1h", "1.5h"]) {
      assert.throws(() => parseDuration(bad), UserError, bad);
    }
    assert.equal(formatDuration(5_400_000), "1h30m");
  });

  it("cron specs for intervals that divide an hour or a day, refused otherwise", () => {
    assert.equal(cronSpec(15 * 60_000), "*/15 * * * *");
    assert.equal(cronSpec(3_600_000), "0 * * * *");
    assert.equal(cronSpec(6 * 3_600_000), "0 */6 * * *");
    assert.equal(cronSpec(86_400_000), "0 0 * * *");
    assert.throws(() => cronSpec(7 * 60_000), /does not divide/);
    assert.throws(() => cronSpec(90_000), /whole number of minutes/);
  });

  it("prints a oneshot systemd service with its timer, and a cron line, with absolute paths and quoted arguments", () => {
    const cmd = {
      executable: "/opt/bernstein/bin/bernstein",
      sdd: "/srv/app/.sdd",
      config: "/etc/bernstein/app.yaml",
      args: ["--every", "1h", "--to-dir", "s3://bkt/site a/", "--keep-last", "3"],
      everyMs: 3_600_000,
      workingDirectory: "/srv/app",
      user: "backup",
    };
    const { service, timer } = systemdUnits(cmd);
    assert.match(
      service,
      /^ExecStart=\/opt\/bernstein\/bin\/bernstein --config \/etc\/bernstein\/app\.yaml --sdd \/srv\/app\/\.sdd dr schedule --every 1h --to-dir 's3:\/\/bkt\/site a\/' --keep-last 3 --once$/m,
    );
    assert.match(service, /^Type=oneshot$/m);
    assert.match(service, /^User=backup$/m);
    assert.doesNotMatch(service, /^Restart=/m, "a oneshot run is retried by the next tick of the timer");
    assert.match(timer, /^OnUnitActiveSec=1h$/m);
    assert.match(timer, /^Unit=bernstein-backup\.service$/m);
    assert.match(timer, /^WantedBy=timers\.target$/m);
    const cron = cronLine(cmd);
    assert.match(
      cron,
      /^0 \* \* \* \* cd \/srv\/app && \/opt\/bernstein\/bin\/bernstein .* --keep-last 3 --once >> /m,
    );
  });

  it("runs, logs one line per run, keeps going after a failed run, stops when aborted", async () => {
    const lines: string[] = [];
    const ac = new AbortController();
    const result = await runLoop(1, {
      run: async (i) => {
        if (i === 2) throw new Error("upload failed");
        if (i === 4) ac.abort();
        return `run ${i} ok`;
      },
      log: (l) => lines.push(l),
      signal: ac.signal,
    });
    assert.deepEqual(result, { runs: 4, failures: 1 });
    assert.equal(lines.length, 4);
    assert.equal(lines[0], "run 1 ok");
    assert.match(lines[1], /run 2 FAILED: upload failed/);
  });
});
