/** Real git repositories for the worktree and merge tests. */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export const TEST_IDENTITY = { name: "bernstein test", email: "test@bernstein.invalid" };

/** `git` in `cwd`, synchronously; returns trimmed stdout. */
export function gitSync(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: TEST_IDENTITY.name,
      GIT_AUTHOR_EMAIL: TEST_IDENTITY.email,
      GIT_COMMITTER_NAME: TEST_IDENTITY.name,
      GIT_COMMITTER_EMAIL: TEST_IDENTITY.email,
      GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z",
      GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z",
    },
  }).trim();
}

/** A repository on branch `main` with `files` committed, and `.sdd/` ignored. */
export async function makeRepo(
  dir: string,
  files: Record<string, string> = { "README.md": "hello\n" },
): Promise<string> {
  await mkdir(dir, { recursive: true });
  gitSync(dir, "init", "--quiet", "-b", "main");
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  await writeFile(path.join(dir, ".gitignore"), ".sdd/\n");
  gitSync(dir, "add", "--all");
  gitSync(dir, "commit", "--quiet", "-m", "initial");
  return gitSync(dir, "rev-parse", "HEAD");
}

/** Commits on `branch` whose message carries the task trailer of `taskId#attempt`. */
export function mergeCommitsOf(repo: string, branch: string, agentId: string): string[] {
  const out = gitSync(repo, "log", "--merges", "--format=%H", `--grep=bernstein-task: ${agentId}$`, branch);
  return out === "" ? [] : out.split("\n");
}
