/**
 * Runs the real `git` binary: execFile with an argument array (never a shell, so branch names and
 * paths are never interpreted), a fixed environment (no pager, no prompts, C locale for stable
 * messages). No wrapper library: every caller needs git's exit status itself (`merge-base
 * --is-ancestor` answers with 1 for "no", `merge` with 1 for a conflict), which execFile gives
 * directly.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { ExitCode, UserError } from "../../errors/errors.js";

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Author and committer of the commits the orchestrator makes itself. */
export interface GitIdentity {
  name: string;
  email: string;
}

export const DEFAULT_IDENTITY: GitIdentity = { name: "bernstein", email: "bernstein@localhost" };

export interface GitRunOptions {
  /** Sets GIT_AUTHOR_* and GIT_COMMITTER_* (commits made by the orchestrator). */
  identity?: GitIdentity;
  /** Fixed author/committer dates, so the same work gives the same commit hashes. */
  date?: string;
}

function gitEnv(opts: GitRunOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_TERMINAL_PROMPT: "0",
    GIT_PAGER: "cat",
    LC_ALL: "C",
    GIT_EDITOR: "true",
    // A status the orchestrator polls must not take the index lock that the user's own `git add`
    // in the same repository needs at that moment.
    GIT_OPTIONAL_LOCKS: "0",
  };
  if (opts.identity) {
    env.GIT_AUTHOR_NAME = opts.identity.name;
    env.GIT_AUTHOR_EMAIL = opts.identity.email;
    env.GIT_COMMITTER_NAME = opts.identity.name;
    env.GIT_COMMITTER_EMAIL = opts.identity.email;
  }
  if (opts.date) {
    env.GIT_AUTHOR_DATE = opts.date;
    env.GIT_COMMITTER_DATE = opts.date;
  }
  return env;
}

/** Runs git in `cwd`; resolves with its exit code (never rejects for a non-zero exit). */
export function runGit(cwd: string, args: string[], opts: GitRunOptions = {}): Promise<GitResult> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      { cwd, env: gitEnv(opts), maxBuffer: 64 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === "ENOENT") {
          const message = existsSync(cwd)
            ? "git: the git binary was not found on PATH (install git)"
            : `git: the folder ${cwd} does not exist`;
          reject(new UserError(message, ExitCode.USAGE));
          return;
        }
        const code = err ? (typeof err.code === "number" ? err.code : 128) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs git and fails (with git's own message and what was being done) on a non-zero exit. */
export async function git(cwd: string, args: string[], opts: GitRunOptions = {}): Promise<string> {
  const result = await runGit(cwd, args, opts);
  if (result.code !== 0) {
    const why = result.stderr.trim().split("\n").pop() || `exit ${result.code}`;
    throw new GitError(`git ${args[0]}: ${why}`, result);
  }
  return result.stdout;
}

/** git said no: the message carries git's last line of stderr. */
export class GitError extends Error {
  readonly result: GitResult;
  constructor(message: string, result: GitResult) {
    super(message);
    this.name = "GitError";
    this.result = result;
  }
}
