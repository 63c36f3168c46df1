/**
 * Scheduled backups: durations, the foreground loop that systemd or cron supervises, and the
 * unit/crontab text for them.
 */
import { ExitCode, UserError } from "../errors/errors.js";
import { setLongTimeout } from "../workspace/timer.js";

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "90s", "15m", "1h", "1h30m", "1d" → milliseconds. */
export function parseDuration(text: string): number {
  const re = /(\d+)\s*([smhdw])/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  const s = text.trim().toLowerCase();
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]];
    matched = re.lastIndex;
  }
  if (s === "" || matched !== s.length || total <= 0) {
    throw new UserError(
      `--every ${text}: expected a duration such as 90s, 15m, 1h, 1h30m or 1d`,
      ExitCode.USAGE,
    );
  }
  if (total < 1000) throw new UserError(`--every ${text}: at least 1s`, ExitCode.USAGE);
  return total;
}

export function formatDuration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, secs] of [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    if (rest >= secs) {
      parts.push(`${Math.floor(rest / secs)}${unit}`);
      rest %= secs;
    }
  }
  return parts.join("") || "0s";
}

export interface LoopHooks {
  /** One scheduled run; resolves to the log line for it. Throwing is logged, not fatal. */
  run: (index: number) => Promise<string>;
  log: (line: string) => void;
  /** Stops the loop (after the run in progress). */
  signal: AbortSignal;
  /** Stop after this many runs (tests, --count). */
  maxRuns?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setLongTimeout(done, ms);
    function done() {
      timer.clear();
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/**
 * Runs `hooks.run` every `everyMs`, aligned to the start of each run: a run that takes longer
 * than the interval is followed by the next one at once (runs never overlap, missed ticks are
 * not replayed). Returns the number of runs that failed.
 */
export async function runLoop(
  everyMs: number,
  hooks: LoopHooks,
): Promise<{ runs: number; failures: number }> {
  let runs = 0;
  let failures = 0;
  let next = Date.now();
  while (!hooks.signal.aborted && (hooks.maxRuns === undefined || runs < hooks.maxRuns)) {
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait, hooks.signal);
    if (hooks.signal.aborted) break;
    const started = Date.now();
    runs++;
    try {
      hooks.log(await hooks.run(runs));
    } catch (err) {
      failures++;
      hooks.log(`${new Date().toISOString()} run ${runs} FAILED: ${(err as Error)?.message ?? String(err)}`);
    }
    next = Math.max(started + everyMs, Date.now());
  }
  return { runs, failures };
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export interface ScheduleCommand {
  /** Absolute path of the bernstein executable. */
  executable: string;
  /** Absolute `.sdd` folder. */
  sdd: string;
  /** Absolute path of the configuration file given with `--config`, if any. */
  config?: string;
  /** `dr schedule` arguments (without --print-*). */
  args: string[];
  everyMs: number;
  workingDirectory: string;
  /** The `User=` of the systemd service. */
  user?: string;
  /** A variable each run reads its password from; neither systemd nor cron passes the caller's. */
  passwordEnv?: string;
}

const ENVIRONMENT_FILE = "/etc/bernstein/backup.env";

/** `bernstein [--config F] --sdd S dr schedule ARGS`, for a unit or a crontab. */
function scheduleCommandLine(cmd: ScheduleCommand, extra: string[] = []): string {
  const globals = [...(cmd.config ? ["--config", cmd.config] : []), "--sdd", cmd.sdd];
  return [cmd.executable, ...globals, "dr", "schedule", ...cmd.args, ...extra].map(shellQuote).join(" ");
}

export const SYSTEMD_UNIT_NAME = "bernstein-backup";

/**
 * A oneshot service that takes one backup (and prunes), and the timer that starts it every
 * interval — the way restic and Litestream are deployed: systemd owns the schedule, the
 * journal keeps each run's log, and a failed run is a failed unit.
 */
export function systemdUnits(cmd: ScheduleCommand): { service: string; timer: string } {
  const every = formatDuration(cmd.everyMs);
  const service = [
    `# bernstein backups of ${cmd.sdd}, started by ${SYSTEMD_UNIT_NAME}.timer.`,
    `# Save as /etc/systemd/system/${SYSTEMD_UNIT_NAME}.service, the timer beside it, then:`,
    `#   systemctl daemon-reload && systemctl enable --now ${SYSTEMD_UNIT_NAME}.timer`,
    "[Unit]",
    `Description=bernstein backup of ${cmd.sdd}`,
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=oneshot",
    ...(cmd.user ? [`User=${cmd.user}`] : []),
    `WorkingDirectory=${cmd.workingDirectory}`,
    `ExecStart=${scheduleCommandLine(cmd, ["--once"])}`,
    "Nice=10",
    "IOSchedulingClass=best-effort",
    "IOSchedulingPriority=7",
    ...(cmd.passwordEnv
      ? [
          `# ${cmd.passwordEnv} (the backup password) and any AWS_* credentials: ${cmd.passwordEnv}=... in this file (mode 0600)`,
          `EnvironmentFile=${ENVIRONMENT_FILE}`,
        ]
      : [`# Credentials: AWS_* variables, or an EnvironmentFile=${ENVIRONMENT_FILE} (mode 0600)`]),
    "",
  ].join("\n");
  const timer = [
    `# Save as /etc/systemd/system/${SYSTEMD_UNIT_NAME}.timer`,
    "[Unit]",
    `Description=bernstein backup of ${cmd.sdd} every ${every}`,
    "",
    "[Timer]",
    // Started later than OnBootSec (enable --now on a running host), the first run is at once.
    "OnBootSec=5min",
    `OnUnitActiveSec=${every}`,
    "AccuracySec=1s",
    `Unit=${SYSTEMD_UNIT_NAME}.service`,
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  return { service, timer };
}

/** The crontab schedule for an interval (cron runs one backup per tick with --once). */
export function cronSpec(everyMs: number): string {
  const minutes = everyMs / 60_000;
  if (!Number.isInteger(minutes) || minutes < 1) {
    throw new UserError(
      "--print-cron: cron needs a whole number of minutes (use systemd for shorter intervals)",
    );
  }
  if (minutes < 60 && 60 % minutes === 0) return `*/${minutes} * * * *`;
  const hours = minutes / 60;
  if (Number.isInteger(hours) && hours < 24 && 24 % hours === 0)
    return hours === 1 ? "0 * * * *" : `0 */${hours} * * *`;
  if (minutes === 1440) return "0 0 * * *";
  if (minutes === 10080) return "0 0 * * 0";
  throw new UserError(
    `--print-cron: ${formatDuration(everyMs)} does not divide an hour or a day evenly; use --print-systemd`,
  );
}

export function cronLine(cmd: ScheduleCommand): string {
  const exec = scheduleCommandLine(cmd, ["--once"]);
  return [
    "# bernstein scheduled off-site backups: add with `crontab -e` (one backup + prune per tick)",
    ...(cmd.passwordEnv
      ? [
          `# cron passes no environment: ${cmd.passwordEnv} (the backup password) must be set for this line,`,
          `# e.g. a line \`${cmd.passwordEnv}=...\` above it in a crontab only you can read`,
        ]
      : []),
    `${cronSpec(cmd.everyMs)} cd ${shellQuote(cmd.workingDirectory)} && ${exec} >> ${shellQuote(cmd.sdd + "/logs/backup-schedule.log")} 2>&1`,
    "",
  ].join("\n");
}
