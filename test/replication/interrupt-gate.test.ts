/**
 * Ctrl-C / SIGTERM of a `start --replication-listen` leader whose decision waits for follower
 * acknowledgements that do not come: the wait ends at once (no ack timeout, however long), the
 * process exits 130/143 with one line naming the waiting entry, and a second signal of the other
 * kind ends a command that handles signals itself at once.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { spawnCli, waitFor } from "../helpers.js";
import { orchestratorWorkspace } from "../orchestrator/support/workspace.js";
import { getJson, makeToken } from "./support/procs.js";

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} while a decision waits for QUORUM acknowledgements exits ${code} at once`, async () => {
    const { dir, sdd, env, cleanup } = await orchestratorWorkspace("bernstein-interrupt-gate-");
    try {
      const { file, token } = await makeToken(dir);
      // Port 9 (discard) refuses: the one follower never acknowledges; the ack timeout is 10 minutes.
      const run = spawnCli(
        [
          "--sdd",
          sdd,
          "start",
          "--until-idle",
          "--replication-listen",
          "127.0.0.1:0",
          "--token-file",
          file,
          "--ack-policy",
          "QUORUM",
          "--follower",
          "east=http://127.0.0.1:9",
          "--ack-timeout",
          "600000",
        ],
        { cwd: dir, env },
      );
      let stderr = "";
      run.child.stderr!.on("data", (d: string) => (stderr += d));
      const url = await waitFor("the leader's URL", () => /serving at (\S+)/.exec(stderr)?.[1], {
        exited: run.done,
      });
      // The leader serves an entry only once it is durable, in the turn its gate starts waiting.
      await waitFor(
        "an entry waiting at the commit gate",
        async () => {
          const st = (await getJson(`${url}/status`, token)) as { wal: { position: { seq: number } | null } };
          return st.wal.position !== null;
        },
        { exited: run.done },
      );
      run.child.kill(signal);
      const r = await run.done;
      assert.equal(r.code, code, r.stderr);
      const lines = r.stderr.split("\n").filter((l) => l.startsWith("bernstein: "));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        new RegExp(
          `^bernstein: interrupted by ${signal} while decision run-\\S+#0 waited for QUORUM acknowledgements \\(0/1\\): it is in the local WAL, not acknowledged; the next start recovers it`,
        ),
      );
      assert.doesNotMatch(r.stderr, /HALTED|\n\s+at /);
    } finally {
      await cleanup();
    }
  });
}

test("onFirstInterrupt: the first signal goes to the command, a second of the other kind ends the process", async () => {
  const helper = path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    "../../src/workspace/interrupt.js",
  );
  const script = `
    import { onFirstInterrupt } from ${JSON.stringify(helper)};
    onFirstInterrupt((s) => process.stdout.write("first " + s + "\\n"));
    setInterval(() => {}, 1000);
    process.stdout.write("listening\\n");
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_c, s) => resolve(s)));
  await waitFor("the child listening", () => out.includes("listening"), { exited });
  child.kill("SIGINT");
  await waitFor("the first signal handled", () => out.includes("first SIGINT"), { exited });
  child.kill("SIGTERM");
  assert.equal(await exited, "SIGTERM");
});
