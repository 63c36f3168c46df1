/**
 * The configuration file (`bernstein.yaml`): its schema. Strict at every level, so a misspelt
 * key is an error naming it rather than a setting silently ignored. Secrets never go in the
 * file: it names where the password is (a file or an environment variable).
 */
import { parseDuration } from "../storage/schedule.js";
import * as z from "../vendor/zod.js";

const count = z.number().check(z.int(), z.minimum(0));
const text = z.string().check(z.minLength(1));

const retention = z.strictObject({
  keep_last: z.optional(count),
  keep_hourly: z.optional(count),
  keep_daily: z.optional(count),
  keep_weekly: z.optional(count),
  keep_monthly: z.optional(count),
});

const duration = text.check(
  z.refine(
    (v) => {
      try {
        parseDuration(v);
        return true;
      } catch {
        return false;
      }
    },
    { message: "expected a duration such as 90s, 15m, 1h, 1h30m or 1d" },
  ),
);

const schedule = z.strictObject({
  every: z.optional(duration),
  /** The `User=` of the systemd service `dr schedule --print-systemd` prints. */
  run_as: z.optional(z.string().check(z.regex(/^[a-z_][a-z0-9_-]*\$?$/i, "expected a user name"))),
});

const backup = z
  .strictObject({
    /** A catalogue location (folder or s3://bucket/prefix/): what `--to-dir` and `--at` take. */
    destination: z.optional(text),
    encrypt: z.optional(z.boolean()),
    password_file: z.optional(text),
    password_env: z.optional(
      z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected the name of an environment variable")),
    ),
    /** age recipients (`age1...`, `age1pq1...`): backups become `.tar.gz.age`, readable only by their identities. */
    recipients: z.optional(z.array(text)),
    /** A file of age recipients (age's format). */
    recipients_file: z.optional(text),
    /** An age identity file, on hosts that restore (never on the host that writes backups). */
    identity_file: z.optional(text),
    metrics_file: z.optional(text),
    retention: z.optional(retention),
    schedule: z.optional(schedule),
  })
  .check(
    z.refine((b) => b.password_file === undefined || b.password_env === undefined, {
      message: "give password_file or password_env, not both",
      path: ["password_env"],
    }),
    z.refine(
      (b) =>
        !(
          b.encrypt === true &&
          b.password_file === undefined &&
          b.password_env === undefined &&
          b.recipients === undefined &&
          b.recipients_file === undefined
        ),
      {
        message:
          "encrypt: true needs recipients, recipients_file, password_file or password_env (the password itself never goes in this file)",
        path: ["encrypt"],
      },
    ),
  );

const s3 = z.strictObject({
  // Refused here, where the key can be named, not later as if a flag had given it.
  endpoint: z.optional(z.url({ protocol: /^https?$/, error: "not an http(s) URL" })),
  region: z.optional(text),
  retries: z.optional(count),
});

const replication = z.strictObject({
  token_file: z.optional(text),
  ack_policy: z.optional(z.enum(["LEADER_ONLY", "QUORUM", "ALL"])),
  /** Follower name → the URL of its own endpoint (or null when it has none), as `--follower name=url`. */
  followers: z.optional(
    z.record(z.string().check(z.regex(/^[A-Za-z0-9_.-]+$/, "expected a follower name")), z.nullable(z.url())),
  ),
});

/** How `start` merges worktree tasks (docs/orchestrator.md, "Worktrees and merges"). */
const merge = z.strictObject({
  strategy: z.optional(z.enum(["merge", "ff-only", "rebase"])),
  on_conflict: z.optional(z.enum(["requeue", "hold"])),
  target_branch: z.optional(text),
  keep_branches: z.optional(z.boolean()),
  /** Author and committer of the orchestrator's commits. */
  author: z.optional(z.strictObject({ name: z.optional(text), email: z.optional(text) })),
});

export const configSchema = z.strictObject({
  /** Every task of `start` runs in its own git worktree and is merged on success. */
  worktrees: z.optional(z.boolean()),
  merge: z.optional(merge),
  backup: z.optional(backup),
  s3: z.optional(s3),
  replication: z.optional(replication),
});

export type Config = z.infer<typeof configSchema>;
