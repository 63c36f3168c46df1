/**
 * Entry script of the agent wrapper (spawned detached by the orchestrator):
 * `node wrapper-main.js '<WrapperJob JSON>'`. See wrapper.ts.
 */
import { runWrapper, type WrapperJob } from "./wrapper.js";
import { shedLauncherEnv } from "../workspace/launcher.js";

// The agent it runs gets the environment the orchestrator was started with.
shedLauncherEnv();

const job = JSON.parse(process.argv[2] ?? "null") as WrapperJob | null;
if (!job || !Array.isArray(job.argv) || !job.agent_id) {
  process.stderr.write("bernstein agent wrapper: missing or malformed job argument\n");
  process.exit(2);
}
runWrapper(job).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(
      `bernstein agent wrapper ${job.agent_id}: ${(err as Error)?.stack ?? String(err)}\n`,
    );
    process.exit(70);
  },
);
