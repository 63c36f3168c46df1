/** A fresh workspace for the orchestrator's CLI tests, with the CLI bound to it. */
import path from "node:path";
import { initWorkspace } from "../../../src/workspace/layout.js";
import { runCli, scratchDir } from "../../helpers.js";

/**
 * `<scratch>/.sdd` initialized; `cli(...)` runs `bernstein --sdd <it>` from the scratch folder with
 * its own state folder and no audit key path inherited from the shell.
 */
export async function orchestratorWorkspace(prefix: string) {
  const s = await scratchDir(prefix);
  const sdd = path.join(s.dir, ".sdd");
  const { workspace } = await initWorkspace(sdd);
  const env = { XDG_STATE_HOME: path.join(s.dir, "state"), BERNSTEIN_AUDIT_KEY_PATH: "" };
  const cli = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: s.dir, env });
  return { ...s, sdd, ws: workspace, env, cli };
}
