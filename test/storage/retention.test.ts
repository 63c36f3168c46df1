import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applyRetention, isoWeek, type RetentionPolicy } from "../../src/storage/retention.js";
import { backupName, parseBackupName } from "../../src/storage/catalogue.js";
import { UserError } from "../../src/errors/errors.js";

const DAY = 86_400_000;
const NEWEST_DAY = Date.UTC(2026, 2, 31); // Tuesday 2026-03-31

/**
 * 60 backups over 87 days: four on 2026-03-31 (00, 06, 12, 18h), one a day at 03:00 for the
 * 26 days before, then one every other day at 03:00 back to day 86.
 */
function sixtyBackups(): { name: string; created: Date; verified: boolean }[] {
  const times: number[] = [0, 6, 12, 18].map((h) => NEWEST_DAY + h * 3_600_000);
  for (let d = 1; d <= 26; d++) times.push(NEWEST_DAY - d * DAY + 3 * 3_600_000);
  for (let d = 28; d <= 86; d += 2) times.push(NEWEST_DAY - d * DAY + 3 * 3_600_000);
  return times.map((t) => ({ name: backupName(new Date(t), false), created: new Date(t), verified: true }));
}

function dayAt(daysBack: number, hour = 3): string {
  return backupName(new Date(NEWEST_DAY - daysBack * DAY + hour * 3_600_000), false);
}

function kept(items: ReturnType<typeof sixtyBackups>, policy: RetentionPolicy): string[] {
  return applyRetention(items, policy)
    .filter((d) => d.keep)
    .map((d) => d.item.name)
    .sort();
}

describe("retention (restic-style buckets)", () => {
  it("the fixture is 60 backups spread over 90 days", () => {
    const items = sixtyBackups();
    assert.equal(items.length, 60);
    assert.equal(new Set(items.map((i) => i.name)).size, 60);
    const span = (items[0].created.getTime() - items.at(-1)!.created.getTime()) / DAY;
    assert.ok(span > 80 && span <= 90, `span ${span}`);
  });

  const table: {
    title: string;
    policy: RetentionPolicy;
    verified?: (name: string) => boolean;
    expected: string[];
  }[] = [
    {
      title: "--keep-last 3 --keep-daily 7 --keep-weekly 4",
      policy: { last: 3, daily: 7, weekly: 4 },
      expected: [
        dayAt(0, 18),
        dayAt(0, 12),
        dayAt(0, 6), // last 3
        dayAt(1),
        dayAt(2),
        dayAt(3),
        dayAt(4),
        dayAt(5),
        dayAt(6), // daily: 03-31 (the 18h one) and the 6 days before
        dayAt(9),
        dayAt(16), // weekly: W14 (18h), W13 (03-29 = day 2), W12 (03-22), W11 (03-15)
      ],
    },
    {
      title: "--keep-last 1",
      policy: { last: 1 },
      expected: [dayAt(0, 18)],
    },
    {
      title: "--keep-hourly 2 --keep-weekly 2 on the newest day",
      policy: { hourly: 2, weekly: 2 },
      expected: [dayAt(0, 18), dayAt(0, 12), dayAt(2)],
    },
    {
      title: "--keep-daily 40: days without a backup use no bucket",
      policy: { daily: 40 },
      // 27 days with a backup in the dense part (day 0..26), then days 28, 30, ... (13 more)
      expected: [
        dayAt(0, 18),
        ...Array.from({ length: 26 }, (_, i) => dayAt(i + 1)),
        ...Array.from({ length: 13 }, (_, i) => dayAt(28 + 2 * i)),
      ],
    },
    {
      title: "the newest verified backup survives even when no rule keeps it",
      policy: { last: 2 },
      verified: (name) => name === dayAt(40),
      expected: [dayAt(0, 18), dayAt(0, 12), dayAt(40)],
    },
  ];

  for (const row of table) {
    it(row.title, () => {
      const items = sixtyBackups().map((i) => ({
        ...i,
        verified: row.verified ? row.verified(i.name) : i.verified,
      }));
      assert.deepEqual(kept(items, row.policy), [...row.expected].sort());
    });
  }

  it("explains every decision", () => {
    const decisions = applyRetention(sixtyBackups(), { last: 3, daily: 7, weekly: 4 });
    assert.equal(decisions.length, 60);
    const newest = decisions[0];
    assert.deepEqual(newest.reasons, ["last 1/3", "daily 1/7 (2026-03-31)", "weekly 1/4 (2026-W14)"]);
    assert.deepEqual(decisions.find((d) => d.item.name === dayAt(16))?.reasons, ["weekly 4/4 (2026-W11)"]);
    assert.deepEqual(decisions.at(-1)?.reasons, ["matched no keep rule"]);
  });

  it("refuses a policy that would delete everything", () => {
    assert.throws(() => applyRetention(sixtyBackups(), {}), UserError);
    assert.throws(() => applyRetention(sixtyBackups(), { last: 0 }), UserError);
    assert.throws(() => applyRetention(sixtyBackups(), { last: -1 }), UserError);
  });

  it("--keep-within: every backup at most that long before the newest one, and no older", () => {
    const items = sixtyBackups();
    // The newest is 2026-03-31 18:00: 3 days back reaches 2026-03-28 18:00.
    const within = applyRetention(items, { within: 3 * DAY });
    const keptNames = within.filter((d) => d.keep).map((d) => d.item.name);
    assert.deepEqual(
      keptNames.sort(),
      [dayAt(0, 0), dayAt(0, 6), dayAt(0, 12), dayAt(0, 18), dayAt(1), dayAt(2)].sort(),
    );
    assert.ok(within.find((d) => d.item.name === dayAt(1))!.reasons.includes("within 3d of the newest"));
    assert.throws(() => applyRetention(items, { within: 0 }), UserError);
  });

  it("ISO weeks: years start on the week with the first Thursday", () => {
    assert.equal(isoWeek(new Date(Date.UTC(2026, 0, 1))), "2026-W01");
    assert.equal(isoWeek(new Date(Date.UTC(2027, 0, 1))), "2026-W53");
    assert.equal(isoWeek(new Date(Date.UTC(2024, 11, 30))), "2025-W01");
    assert.equal(isoWeek(new Date(Date.UTC(2026, 2, 29))), "2026-W13");
    assert.equal(isoWeek(new Date(Date.UTC(2026, 2, 30))), "2026-W14");
  });

  it("backup names round-trip and reject foreign or impossible names", () => {
    const d = new Date(Date.UTC(2026, 10, 27, 2, 30, 5));
    assert.equal(backupName(d, true), "bernstein-backup-20261127T023005Z.tar.gz.enc");
    assert.deepEqual(parseBackupName("bernstein-backup-20261127T023005Z.tar.gz.enc"), {
      created: d,
      encrypted: true,
    });
    for (const foreign of [
      "notes.txt",
      "bernstein-backup-20260231T000000Z.tar.gz",
      "bernstein-backup-20261127T023005Z.tar.gz.json",
      "bernstein-backup-20261127T023005.tar.gz",
      "xbernstein-backup-20261127T023005Z.tar.gz",
    ]) {
      assert.equal(parseBackupName(foreign), undefined, foreign);
    }
  });
});
