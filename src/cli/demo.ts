/**
 * `npm run demo`: the README's main command. Builds a demo workspace in a temp folder by running
 * real tasks through the orchestrator (`bernstein start --until-idle`: WAL decisions, audit chain,
 * checkpoints, cost-free shell agents), then runs an encrypted restore drill on it and prints the
 * report. Touches nothing outside the temp folder (the audit key lives there too).
 * `--keep` keeps the folder; `--tasks N` sizes the backlog (default 24).
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { runDrill } from "../dr/drill.js";
import { runDoctor } from "../orchestrator/doctor.js";
import { addTask } from "../orchestrator/tasks.js";
import { initWorkspace } from "../workspace/layout.js";
import { BIN, launcherEnv, launcherFlags } from "../workspace/launcher.js";
import { printDrill } from "./commands/dr/drill.js";
import { Output } from "./output.js";

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const json = args.includes("--json");
const keep = args.includes("--keep");
const tasks = Number(flag("--tasks") ?? 24);

const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-demo-"));
process.env.BERNSTEIN_AUDIT_KEY_PATH = path.join(dir, "state", "audit.key");
const out = new Output({ json, quiet: false });
try {
  const { workspace: ws } = await initWorkspace(path.join(dir, ".sdd"));
  for (let i = 0; i < tasks; i++) {
    await addTask(ws, {
      id: `T-${String(i + 1).padStart(3, "0")}`,
      title: `demo task ${i + 1}`,
      command: `echo "task ${i + 1} ran" > /dev/null; sleep 0.05`,
      dependsOn: i >= 4 ? [`T-${String(i - 3).padStart(3, "0")}`] : undefined,
    });
  }
  out.line(
    keep
      ? `Demo workspace: ${ws.shownRoot}`
      : `Demo workspace: ${ws.shownRoot} (temporary: removed at the end; --keep keeps it)`,
  );
  out.line(
    `  running ${tasks} tasks through the orchestrator (bernstein start --until-idle --max-agents 4)...`,
  );
  const start = spawnSync(
    process.execPath,
    [...launcherFlags(), BIN, "start", "--sdd", ws.root, "--until-idle", "--max-agents", "4", "--json"],
    { encoding: "utf8", env: launcherEnv() },
  );
  if (start.status !== 0)
    throw new Error(`demo: start failed (exit ${start.status}): ${start.stderr.trim()}`);
  // The key is named only where it will still exist after the demo.
  out.line(
    keep
      ? `  done; the audit key for this demo is ${process.env.BERNSTEIN_AUDIT_KEY_PATH}`
      : "  done (the demo's audit key lives in the demo folder and goes with it)",
  );
  out.line("");
  const report = await runDrill(ws, {
    password: "demo passphrase",
    keepDir: keep ? path.join(dir, "drill") : undefined,
    doctor: runDoctor,
  });
  await finish();
  out.result(
    {
      demo_dir: dir,
      demo_dir_kept: keep,
      audit_key: keep ? process.env.BERNSTEIN_AUDIT_KEY_PATH : null,
      tasks,
      ...report,
    },
    () => printDrill(out, report),
  );
  out.line(keep ? `\nKept: ${dir}` : `\nRemoved ${dir} (--keep keeps it)`);
  process.exitCode = report.ok ? 0 : 1;
} finally {
  await finish();
}

/** Removes the demo folder (unless --keep) before anything says it was removed. */
async function finish(): Promise<void> {
  if (!keep) await rm(dir, { recursive: true, force: true });
}
