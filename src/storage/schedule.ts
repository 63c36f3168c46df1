/**
 * Scheduled backups: durations, the foreground loop that systemd or cron supervises, and the
 * unit/crontab text for them.
 */
import { ExitCode, UserError } from "../cli/errors.js";

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
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
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
  /** `dr schedule` arguments (without --print-*). */
  args: string[];
  everyMs: number;
  workingDirectory: string;
}

export function systemdUnit(cmd: ScheduleCommand): string {
  const exec = [cmd.executable, "--sdd", cmd.sdd, "dr", "schedule", ...cmd.args].map(shellQuote).join(" ");
  return [
    "# bernstein scheduled off-site backups: save as /etc/systemd/system/bernstein-backup.service,",
    "# then: systemctl daemon-reload && systemctl enable --now bernstein-backup.service",
    "[Unit]",
    "Description=bernstein scheduled backups of " + cmd.sdd,
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `WorkingDirectory=${cmd.workingDirectory}`,
    `ExecStart=${exec}`,
    "Restart=on-failure",
    "RestartSec=30",
    "# Credentials: AWS_* variables, or an EnvironmentFile=/etc/bernstein/backup.env (mode 0600)",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
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
  const exec = [cmd.executable, "--sdd", cmd.sdd, "dr", "schedule", ...cmd.args, "--once"]
    .map(shellQuote)
    .join(" ");
  return [
    "# bernstein scheduled off-site backups: add with `crontab -e` (one backup + prune per tick)",
    `${cronSpec(cmd.everyMs)} cd ${shellQuote(cmd.workingDirectory)} && ${exec} >> ${shellQuote(cmd.sdd + "/logs/backup-schedule.log")} 2>&1`,
    "",
  ].join("\n");
}
