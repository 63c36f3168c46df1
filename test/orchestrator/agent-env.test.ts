/**
 * An agent inherits the orchestrator's environment, but not bernstein's own secrets: the archive
 * password (BERNSTEIN_DR_PASSWORD, or the variable the configuration's backup.password_env
 * names) and the replication token are read at start and gone before any agent runs, in the
 * foreground and in the background process of `start --detach`.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runCli, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "./support/workspace.js";

const SECRETS = {
  BERNSTEIN_DR_PASSWORD: "dr-secret-1",
  BERNSTEIN_REPLICATION_TOKEN: "token-secret-0123456789",
  MY_BACKUP_PW: "file-named-secret-2",
};

async function agentEnvOf(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, "utf8");
  return Object.fromEntries(
    text
      .split("\0")
      .filter(Boolean)
      .map((kv) => [kv.split("=")[0]!, kv.slice(kv.indexOf("=") + 1)]),
  );
}

test("agents get the caller's environment without bernstein's secrets (foreground, --detach, the archive's password read from them)", async () => {
  const { dir, sdd, env, cli, cleanup } = await orchestratorWorkspace("bernstein-agent-env-");
  try {
    await writeFile(path.join(dir, "bernstein.yaml"), "backup:\n  password_env: MY_BACKUP_PW\n");
    const withSecrets = { ...env, ...SECRETS, KEPT_FOR_AGENTS: "yes" };
    const run = (...args: string[]) => runCli(["--sdd", sdd, ...args], { cwd: dir, env: withSecrets });
    for (const [id, how] of [
      ["fg", ["start", "--until-idle", "--poll", "20", "--archive-to", path.join(dir, "arch"), "--encrypt"]],
      ["bg", ["start", "--detach", "--until-idle", "--poll", "20"]],
    ] as const) {
      const add = await cli(
        "task",
        "add",
        id,
        "--id",
        id,
        "--command",
        `env -0 > ${id}.tmp && mv ${id}.tmp ${id}.env`,
      );
      assert.equal(add.code, 0, add.stderr);
      const started = await run(...how);
      assert.equal(started.code, 0, started.stderr);
      // The background process ends by itself (--until-idle) once the task is done.
      await waitFor(`${id}'s orchestrator to end`, async () => {
        const s = await cli("status", "--json");
        return existsSync(path.join(dir, `${id}.env`)) && !JSON.parse(s.stdout).orchestrator.running;
      });
      const seen = await agentEnvOf(path.join(dir, `${id}.env`));
      assert.equal(seen.KEPT_FOR_AGENTS, "yes", `${id}: the rest of the environment is kept`);
      for (const name of Object.keys(SECRETS))
        assert.equal(seen[name], undefined, `${id}: ${name} reached the agent`);
    }
  } finally {
    await cleanup();
  }
});
