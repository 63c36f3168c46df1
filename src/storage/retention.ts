/**
 * Retention in the style of restic's `forget`: the newest N backups, every backup made within a
 * duration of the newest one, then one backup per
 * hour/day/week/month bucket for the newest H/D/W/M buckets that hold a backup. Buckets use
 * UTC; weeks are ISO weeks (Monday first). A backup is kept if any rule keeps it, and every
 * decision says why. The newest backup that passed verification is never deleted, whatever
 * the rules say: a location must always keep one restorable copy. `verified` is the caller's
 * word: a prune proves it of that backup first and decides again if it fails (prune.ts).
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { formatDuration } from "./schedule.js";

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  /** Milliseconds: keep every item created within this long before the newest item (restic's --keep-within). */
  within?: number;
}

export interface RetentionItem {
  name: string;
  created: Date;
  verified: boolean;
}

export interface RetentionDecision<T extends RetentionItem> {
  item: T;
  keep: boolean;
  reasons: string[];
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

function day(d: Date): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** ISO 8601 week of a UTC date, as `YYYY-Www`. */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dow = t.getUTCDay() || 7; // Monday 1 .. Sunday 7
  t.setUTCDate(t.getUTCDate() + 4 - dow); // the Thursday of this week decides the year
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${pad(week)}`;
}

const RULES: { key: keyof RetentionPolicy; label: string; bucket: (d: Date) => string }[] = [
  { key: "hourly", label: "hourly", bucket: (d) => `${day(d)} ${pad(d.getUTCHours())}h` },
  { key: "daily", label: "daily", bucket: day },
  { key: "weekly", label: "weekly", bucket: isoWeek },
  { key: "monthly", label: "monthly", bucket: (d) => day(d).slice(0, 7) },
];

/** A retention policy that cannot be applied: `rule` names the bad rule (none: it keeps nothing). */
export class RetentionPolicyError extends UserError {
  constructor(
    readonly rule: keyof RetentionPolicy | undefined,
    readonly value?: unknown,
  ) {
    super(
      rule === undefined
        ? "retention: the policy keeps nothing (every rule is 0); refusing to delete everything"
        : `retention: rule ${rule}: expected a whole number >= 0, got ${String(value)}`,
      ExitCode.USAGE,
    );
  }
}

export function validatePolicy(policy: RetentionPolicy): void {
  const given = Object.entries(policy).filter(([, v]) => v !== undefined);
  for (const [k, v] of given) {
    if (!Number.isInteger(v) || (v as number) < 0)
      throw new RetentionPolicyError(k as keyof RetentionPolicy, v);
  }
  // Like restic: refusing is safer than deleting everything.
  if (!given.some(([, v]) => (v as number) > 0)) throw new RetentionPolicyError(undefined);
}

/** Keeps every item created at most `ms` before the newest one (restic measures from the newest, not from now). */
function keepWithin<T extends RetentionItem>(newestFirst: RetentionDecision<T>[], ms: number): void {
  if (ms <= 0 || newestFirst.length === 0) return;
  const since = newestFirst[0]!.item.created.getTime() - ms;
  for (const d of newestFirst) {
    if (d.item.created.getTime() < since) break;
    d.keep = true;
    d.reasons.push(`within ${formatDuration(ms)} of the newest`);
  }
}

/** Newest first: by the time created, then by name. */
function newestFirst<T extends RetentionItem>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => b.created.getTime() - a.created.getTime() || (a.name < b.name ? 1 : -1));
}

/**
 * The newest backup that passed verification: the one prune never deletes and `--latest`
 * restores (a newer unverified one may be a backup that failed part-way).
 */
export function newestVerified<T extends RetentionItem>(items: readonly T[]): T | undefined {
  return newestFirst(items).find((i) => i.verified);
}

/** Decides keep/delete for every item; the result is newest first. */
export function applyRetention<T extends RetentionItem>(
  items: T[],
  policy: RetentionPolicy,
): RetentionDecision<T>[] {
  validatePolicy(policy);
  const decisions = newestFirst(items).map((item) => ({ item, keep: false, reasons: [] as string[] }));
  const lastN = policy.last ?? 0;
  decisions.forEach((d, i) => {
    if (i < lastN) {
      d.keep = true;
      d.reasons.push(`last ${i + 1}/${lastN}`);
    }
  });
  keepWithin(decisions, policy.within ?? 0);
  for (const rule of RULES) {
    const limit = policy[rule.key] ?? 0;
    let used = 0;
    let lastBucket: string | undefined;
    for (const d of decisions) {
      if (used >= limit) break;
      const bucket = rule.bucket(d.item.created);
      // The newest backup of each bucket represents it.
      if (bucket === lastBucket) continue;
      lastBucket = bucket;
      used++;
      d.keep = true;
      d.reasons.push(`${rule.label} ${used}/${limit} (${bucket})`);
    }
  }
  const verified = newestVerified(items);
  const kept = decisions.find((d) => d.item === verified);
  if (kept && !kept.keep) {
    kept.keep = true;
    kept.reasons.push("newest verified backup (never deleted)");
  }
  for (const d of decisions) if (!d.keep) d.reasons.push("matched no keep rule");
  return decisions;
}
