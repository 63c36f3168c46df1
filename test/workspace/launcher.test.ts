import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { BIN, launcherEnv, launcherFlags, shedLauncherEnv } from "../../src/workspace/launcher.js";

const OURS = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=8388608";

test("bin/bernstein's Node flags and tunables are read from its exec line", () => {
  assert.deepEqual(launcherFlags(), [
    "--max-semi-space-size=2",
    "--v8-pool-size=1",
    "--no-concurrent-recompilation",
  ]);
  assert.equal(launcherEnv({}).GLIBC_TUNABLES, OURS);
});

test("the launcher's tunables go before the caller's, and shedding gives the caller's back", () => {
  for (const callers of [undefined, "glibc.malloc.arena_max=2", "glibc.malloc.hugetlb=0"]) {
    const env = launcherEnv({ PATH: "/bin", GLIBC_TUNABLES: callers });
    assert.equal(env.GLIBC_TUNABLES, callers === undefined ? OURS : `${OURS}:${callers}`);
    shedLauncherEnv(env);
    assert.deepEqual(
      env,
      callers === undefined ? { PATH: "/bin" } : { PATH: "/bin", GLIBC_TUNABLES: callers },
    );
  }
  // A caller's own value that does not start with the launcher's is left as it is.
  const env = { GLIBC_TUNABLES: "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1" };
  shedLauncherEnv(env);
  assert.equal(env.GLIBC_TUNABLES, "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
});

test("bin/bernstein runs through sh as a user runs it, and through node FLAGS FILE as we start it", () => {
  const env = { ...process.env, GLIBC_TUNABLES: "glibc.malloc.arena_max=2" };
  const version = execFileSync(BIN, ["--version"], { env, encoding: "utf8" });
  assert.match(version, /^\d+\.\d+\.\d+\n$/);
  assert.equal(
    execFileSync(process.execPath, [...launcherFlags(), BIN, "--version"], { env, encoding: "utf8" }),
    version,
  );
});
