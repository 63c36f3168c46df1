/**
 * The configuration file (`bernstein.yaml`): its schema. Strict at every level, so a misspelt
 * key is an error naming it rather than a setting silently ignored. Secrets never go in the
 * file: it names where the password is (a file or an environment variable).
 */
import { z } from "zod";
import { parseDuration } from "../storage/schedule.js";

const count = z.number().int().min(0);
const text = z.string().min(1);

const retention = z.strictObject({
  keep_last: count.optional(),
  keep_hourly: count.optional(),
  keep_daily: count.optional(),
  keep_weekly: count.optional(),
  keep_monthly: count.optional(),
});

const duration = text.refine(
  (v) => {
    try {
      parseDuration(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: "expected a duration such as 90s, 15m, 1h, 1h30m or 1d" },
);

const schedule = z.strictObject({
  every: duration.optional(),
  /** The `User=` of the systemd service `dr schedule --print-systemd` prints. */
  run_as: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]*\$?$/i, "expected a user name")
    .optional(),
});

const backup = z
  .strictObject({
    /** A catalogue location (folder or s3://bucket/prefix/): what `--to-dir` and `--at` take. */
    destination: text.optional(),
    encrypt: z.boolean().optional(),
    password_file: text.optional(),
    password_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected the name of an environment variable")
      .optional(),
    /** age recipients (`age1...`, `age1pq1...`): backups become `.tar.gz.age`, readable only by their identities. */
    recipients: z.array(text).optional(),
    /** A file of age recipients (age's format). */
    recipients_file: text.optional(),
    /** An age identity file, on hosts that restore (never on the host that writes backups). */
    identity_file: text.optional(),
    metrics_file: text.optional(),
    retention: retention.optional(),
    schedule: schedule.optional(),
  })
  .refine((b) => b.password_file === undefined || b.password_env === undefined, {
    message: "give password_file or password_env, not both",
    path: ["password_env"],
  })
  .refine(
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
  );

const s3 = z.strictObject({
  endpoint: z.url().optional(),
  region: text.optional(),
  retries: count.optional(),
});

const replication = z.strictObject({
  token_file: text.optional(),
  ack_policy: z.enum(["LEADER_ONLY", "QUORUM", "ALL"]).optional(),
  /** Follower name → the URL of its own endpoint (or null when it has none), as `--follower name=url`. */
  followers: z
    .record(z.string().regex(/^[A-Za-z0-9_.-]+$/, "expected a follower name"), z.url().nullable())
    .optional(),
});

/** How `start` merges worktree tasks (docs/orchestrator.md, "Worktrees and merges"). */
const merge = z.strictObject({
  strategy: z.enum(["merge", "ff-only", "rebase"]).optional(),
  on_conflict: z.enum(["requeue", "hold"]).optional(),
  target_branch: text.optional(),
  keep_branches: z.boolean().optional(),
  /** Author and committer of the orchestrator's commits. */
  author: z.strictObject({ name: text.optional(), email: text.optional() }).optional(),
});

export const configSchema = z.strictObject({
  /** Every task of `start` runs in its own git worktree and is merged on success. */
  worktrees: z.boolean().optional(),
  merge: merge.optional(),
  backup: backup.optional(),
  s3: s3.optional(),
  replication: replication.optional(),
});

export type Config = z.infer<typeof configSchema>;
