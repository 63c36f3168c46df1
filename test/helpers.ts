/** Shared test helpers: scratch folders, the CLI as a real child process, repo paths. */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import {
  closeSync,
  constants as fsConstants,
  openSync,
  readFileSync,
  unlinkSync,
  watch,
  type FSWatcher,
} from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { launcherEnv, launcherFlags } from "../src/workspace/launcher.js";
import { TASK_STATES } from "../src/workspace/layout.js";

/** The checkout root (tests run from dist/test/...). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(REPO_ROOT, "bin", "bernstein");
/** The arguments that run bin/bernstein as its first line does: with its Node flags. */
export const CLI_ARGV: readonly string[] = [...launcherFlags(), CLI];
/** The environment bin/bernstein gives Node: the test's own with `extra` over it, and its GLIBC_TUNABLES. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return launcherEnv({ ...process.env, ...extra });
}
export const FIXTURES = path.join(REPO_ROOT, "test", "fixtures");

/**
 * A task command that runs until the file `gate` exists. It also ends once the folder holding the
 * gate is gone, so a test that fails before it opens the gate never leaves it looping.
 */
export function untilGate(gate: string): string {
  return `while [ ! -e ${gate} ] && [ -d ${path.dirname(gate)} ]; do sleep 0.05; done`;
}

/** `start --json`'s `counts` (and `status --json`'s `tasks`) with no task in any folder. */
export const NO_TASKS: Readonly<Record<string, number>> = Object.fromEntries(TASK_STATES.map((s) => [s, 0]));
/** What the Python Bernstein produced (archives, a workspace, its audit key) for compatibility tests. */
export const PYTHON_REFERENCE = path.join(FIXTURES, "python-reference");

/** The facts `python-reference/expected.json` states about those outputs. */
export interface PythonReferenceFacts {
  wal: { run_id: string; entries: number; fingerprint: string; last_entry_hash: string };
  backups: {
    plain: { file: string; reported_file_count: number };
    encrypted: { file: string; password: string };
  };
  restored_files_sha256: Record<string, string>;
}

export function pythonReferenceFacts(): PythonReferenceFacts {
  return JSON.parse(
    readFileSync(path.join(PYTHON_REFERENCE, "expected.json"), "utf8"),
  ) as PythonReferenceFacts;
}

/**
 * Builds the realistic workspace of bench/make-workspace.mjs in `dir` (8,421 files unless `files`
 * says otherwise), its audit key written to `keyOut`; returns the `.sdd` folder.
 */
export function makeBenchWorkspace(dir: string, opts: { files?: number; keyOut: string }): string {
  const args = [path.join(REPO_ROOT, "bench", "make-workspace.mjs"), dir, "--key-out", opts.keyOut];
  if (opts.files !== undefined) args.push("--files", String(opts.files));
  execFileSync(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  return path.join(dir, ".sdd");
}

export async function scratchDir(
  prefix = "bernstein-test-",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Whether script(1) is here to give a command a pseudo-terminal. */
export function canRunOnTerminal(): boolean {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs the CLI on a pseudo-terminal (script(1)); stdout and stderr both arrive in `output`.
 * Asynchronous, so that servers in the test's own process (s3rver) keep answering.
 */
export function runCliOnTerminal(
  args: string[],
  opts: { env?: Record<string, string | undefined> } = {},
): Promise<{ code: number | null; output: string }> {
  const terminal = spawnCliOnTerminal(args, opts);
  terminal.endInput();
  return terminal.done;
}

/**
 * The CLI on a pseudo-terminal (script(1)) that the test types into: `type("\x03")` is Ctrl-C,
 * which the terminal turns into SIGINT for the command (and echoes as ^C), as for a person at it.
 * `output()` is everything the terminal showed so far (stdout and stderr).
 */
export function spawnCliOnTerminal(
  args: string[],
  opts: { env?: Record<string, string | undefined> } = {},
): {
  type: (text: string) => void;
  endInput: () => void;
  output: () => string;
  done: Promise<{ code: number | null; output: string }>;
} {
  const quote = (a: string): string => `'${a.replace(/'/g, "'\\''")}'`;
  const command = [process.execPath, ...CLI_ARGV, ...args].map(quote).join(" ");
  const child = spawn("script", ["-qec", command, "/dev/null"], {
    env: cliEnv(opts.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const done = new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
  return {
    type: (text) => child.stdin.write(text),
    endInput: () => child.stdin.end(),
    output: () => output,
    done,
  };
}

export function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI_ARGV, ...args], {
      cwd: opts.cwd,
      env: cliEnv(opts.env),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** Runs `fn` with `env` over process.env (undefined removes), then puts the previous values back. */
export async function withEnv<T>(env: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (vars: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(env);
  try {
    return await fn();
  } finally {
    set(saved);
  }
}

let mainQueue: Promise<unknown> = Promise.resolve();

/**
 * The CLI's main() in the test's own process, for a case repeated over many inputs whose being a
 * process a real run (runCli) of the same file already checks: `env` over process.env (undefined
 * removes), `cwd` as the working folder, stdout and stderr captured, and the exit code that
 * bin/bernstein would exit with. One call at a time (the process's streams, env, cwd and
 * exitCode are borrowed and given back). main() is loaded on first use only.
 */
export function runMain(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = async () => {
    const { main } = await import("../src/cli/main.js");
    // The test runner reports to this process's stdout through a pipe that writes on later
    // ticks: let what it has queued (the previous test's result) go out before stdout is taken.
    await new Promise((resolve) => setImmediate(resolve));
    const savedCwd = process.cwd();
    const savedExitCode = process.exitCode;
    const out = { stdout: "", stderr: "" };
    const capture = (stream: "stdout" | "stderr") => {
      const write = process[stream].write;
      process[stream].write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        out[stream] += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
        const done = rest.find((r) => typeof r === "function") as (() => void) | undefined;
        if (done) queueMicrotask(done);
        return true;
      }) as typeof process.stdout.write;
      return () => (process[stream].write = write);
    };
    const restore = [capture("stdout"), capture("stderr")];
    try {
      if (opts.cwd) process.chdir(opts.cwd);
      process.exitCode = undefined;
      const code = await withEnv(opts.env ?? {}, () => main(args));
      return { code, ...out };
    } finally {
      for (const r of restore) r();
      process.chdir(savedCwd);
      process.exitCode = savedExitCode;
    }
  };
  const result = mainQueue.then(run);
  mainQueue = result.catch(() => undefined);
  return result;
}

/**
 * Runs the CLI with stdout a pipe whose reader is already gone (what `| head` leaves once it has
 * read enough): a FIFO opened for reading, then for writing, then the reading end closed, so
 * every write of the child fails with EPIPE — deterministically, from its first byte.
 */
export function runCliWithClosedStdout(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const fifo = path.join(
    os.tmpdir(),
    `bernstein-closed-pipe-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  execFileSync("mkfifo", [fifo]);
  let writeEnd: number;
  try {
    const readEnd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    writeEnd = openSync(fifo, fsConstants.O_WRONLY);
    closeSync(readEnd);
  } finally {
    unlinkSync(fifo);
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI_ARGV, ...args], {
      cwd: opts.cwd,
      env: cliEnv(opts.env),
      stdio: ["ignore", writeEnd, "pipe"],
    });
    closeSync(writeEnd);
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

/** The CLI as a child process the test can signal: `done` settles when it exits. */
export function spawnCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [...CLI_ARGV, ...args], {
    cwd: opts.cwd,
    env: cliEnv(opts.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/**
 * Polls `check` until it returns a truthy value (a condition, never a fixed sleep); fails after
 * `ms`, or at once when `exited` settles first (the process it waits on is gone).
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { ms?: number; exited?: Promise<unknown> } = {},
): Promise<T> {
  let gone = false;
  void opts.exited?.then(() => (gone = true));
  for (const t0 = Date.now(); ;) {
    const v = await check();
    if (v) return v;
    if (gone) throw new Error(`the process exited before ${what}`);
    if (Date.now() - t0 > (opts.ms ?? 120_000)) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The changes inside a folder as they happen (inotify, through fs.watch), for a test that must
 * act the moment a child process changes it (a kill at the n-th change of a store): `next()`
 * settles at the first event since the previous call (at once if one came meanwhile), or after
 * `fallbackMs` at the latest (a folder not there yet, a process that exited, an event the kernel
 * dropped), so the caller re-reads the folder and decides. Unlike a readdir loop on
 * setImmediate, waiting costs no CPU that the child being watched needs.
 */
export function folderChanges(
  dir: string,
  fallbackMs = 100,
): { next: () => Promise<void>; close: () => void } {
  let watcher: FSWatcher | undefined;
  let pending = false;
  let wake: (() => void) | undefined;
  const watching = (): void => {
    if (watcher) return;
    try {
      watcher = watch(dir, () => {
        pending = true;
        wake?.();
      });
      watcher.on("error", () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      // Not there yet: the fallback wakes the caller, and the next call tries again.
    }
  };
  watching();
  return {
    async next() {
      watching();
      if (!pending)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, fallbackMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      wake = undefined;
      pending = false;
    },
    close: () => watcher?.close(),
  };
}

/**
 * The environment of a CLI child kept to the scratch folder `dir`: its own audit key and HOME, and
 * no workspace or password inherited from the shell running the tests.
 */
export function envFor(dir: string): Record<string, string | undefined> {
  return {
    BERNSTEIN_AUDIT_KEY_PATH: path.join(dir, "key", "audit.key"),
    BERNSTEIN_SDD: undefined,
    BERNSTEIN_DR_PASSWORD: undefined,
    BERNSTEIN_DR_IDENTITY_FILE: undefined,
    HOME: dir,
  };
}

/** Deterministic PRNG (mulberry32): a seed gives the same sequence every time. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Runs `body` with a random source seeded from `$envVar` (to replay a failure) or, unset, a fresh
 * seed; a failure's message starts with `envVar=seed`, so the same schedule runs again with it.
 */
export async function withSeed<T>(
  envVar: string,
  body: (rand: () => number, seed: number) => Promise<T>,
): Promise<T> {
  const given = process.env[envVar];
  const seed = given === undefined || given === "" ? randomInt(1_000_000) : Number(given);
  if (!Number.isInteger(seed)) throw new Error(`${envVar}=${given}: expected an integer seed`);
  try {
    return await body(prng(seed), seed);
  } catch (err) {
    if (err instanceof Error) err.message = `[${envVar}=${seed} replays this] ${err.message}`;
    throw err;
  }
}

/** Writes a module hook that appends each loaded file's URL to `log`; returns NODE_OPTIONS for it. */
export async function moduleLoadLogger(dir: string, log: string): Promise<string> {
  const hook = path.join(dir, "hook.mjs");
  await writeFile(
    hook,
    `import { appendFileSync } from "node:fs";
export async function load(url, context, next) {
  if (url.startsWith("file:")) appendFileSync(${JSON.stringify(log)}, url + "\\n");
  return next(url, context);
}
`,
  );
  const register = path.join(dir, "register.mjs");
  await writeFile(
    register,
    `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
  );
  return `--import=${pathToFileURL(register).href}`;
}
