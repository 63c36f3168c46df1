/** Workspaces and CLI calls for the WAL archive tests. */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { initWorkspace, type Workspace } from "../../../src/workspace/layout.js";
import { WalWriter } from "../../../src/wal/writer.js";
import type { GenerationRecord } from "../../../src/archive/catalog.js";
import type { ArchiveProblem } from "../../../src/archive/check.js";
import type { RestorePoint } from "../../../src/archive/restore-point.js";
import { generationKey, parseArchiveKey } from "../../../src/archive/names.js";
import { codecOf, decodeSegment, encodeSegment } from "../../../src/archive/segment-codec.js";
import assert from "node:assert/strict";
import { envFor, runCli, scratchDir, type CliResult } from "../../helpers.js";

export interface ArchiveFixture {
  dir: string;
  sdd: string;
  ws: Workspace;
  env: Record<string, string | undefined>;
  cli: (args: string[], sdd?: string) => Promise<CliResult>;
}

export async function archiveFixture(
  dir: string,
  extraEnv: Record<string, string> = {},
): Promise<ArchiveFixture> {
  const sdd = path.join(dir, "project", ".sdd");
  const { workspace: ws } = await initWorkspace(sdd);
  const env = { ...envFor(dir), ...extraEnv };
  const keyFile = env.BERNSTEIN_AUDIT_KEY_PATH!;
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  await writeFile(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 });
  const cli = (args: string[], at = sdd) => runCli(["--sdd", at, ...args], { env, cwd: dir });
  return { dir, sdd, ws, env, cli };
}

/** A workspace in a scratch folder and a folder store beside it, archived to with `archive()`. */
export async function archivedFixture(prefix: string) {
  const scratch = await scratchDir(prefix);
  const f = await archiveFixture(path.join(scratch.dir, "src"));
  const store = path.join(scratch.dir, "store");
  const archive = async (): Promise<void> => {
    const r = await f.cli(["dr", "archive", "--to", store, "--once"]);
    assert.equal(r.code, 0, r.stderr);
  };
  return { scratch, f, store, archive };
}

export type ArchivedFixture = Awaited<ReturnType<typeof archivedFixture>>;

/** Appends `n` decisions (intent + commit pairs of task_claimed) to run `runId` through the WAL writer. */
export async function appendDecisions(ws: Workspace, runId: string, n: number, from = 0): Promise<void> {
  const w = await WalWriter.open(ws, runId);
  try {
    const pending: Promise<unknown>[] = [];
    for (let i = from; i < from + n; i++) {
      pending.push(
        w.append({
          decision_type: "task_claimed",
          inputs: { task_id: `T-${i}`, attempt: 1 },
          committed: true,
        }),
      );
      if (pending.length >= 16) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  } finally {
    await w.close();
  }
}

export const sha256File = async (file: string): Promise<string> =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");

/** Every object of a folder store: name → sha256 (hidden sidecars left out). */
export async function storeObjects(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    if (name.startsWith(".")) continue;
    out.set(name, await sha256File(path.join(dir, name)));
  }
  return out;
}

/** How the plain generation of segment `key` in folder store `dir` stores its segments. */
async function plainCodecIn(dir: string, key: string) {
  const name = parseArchiveKey(key);
  assert.ok(name?.kind === "segment", `${key}: not a segment`);
  const record = JSON.parse(
    await readFile(path.join(dir, generationKey(name.generation)), "utf8"),
  ) as GenerationRecord;
  assert.ok(!record.encrypted, `${key}: its generation is encrypted`);
  return { codec: codecOf(record), length: name.to - name.from };
}

/** The plaintext of segment `key` of a plain generation in folder store `dir` (inflated if compressed). */
export async function segmentText(dir: string, key: string): Promise<string> {
  const { codec, length } = await plainCodecIn(dir, key);
  return (await decodeSegment(codec, await readFile(path.join(dir, key)), length)).toString("utf8");
}

/**
 * Stores `text` as segment `key` of a plain generation in folder store `dir`, encoded as its
 * generation stores segments, with its index's hashes made to match: a segment only its lines
 * tell from the real one.
 */
export async function rewriteSegment(dir: string, key: string, text: string): Promise<void> {
  const { codec } = await plainCodecIn(dir, key);
  const plain = Buffer.from(text, "utf8");
  const plainSha = createHash("sha256").update(plain).digest("hex");
  const stored = await encodeSegment(codec, [plain], { name: key, timeMs: 0, plainSha256: plainSha });
  await writeFile(path.join(dir, key), stored);
  const sidecar = path.join(dir, `.${key}.meta.json`);
  const meta = JSON.parse(await readFile(sidecar, "utf8")) as Record<string, string>;
  meta.sha256 = createHash("sha256").update(stored).digest("hex");
  if (meta["plain-sha256"] !== undefined) meta["plain-sha256"] = plainSha;
  await writeFile(sidecar, JSON.stringify(meta) + "\n");
}

export const walSegments = (objects: Iterable<string>, runId: string): string[] =>
  [...objects].filter((k) => k.includes(`.seg.runtime%2Fwal%2F${runId}.wal.jsonl.`)).sort();

/** What `status --json` says of the state (the checkpoint's age and the process table aside). */
export function statusState(json: string) {
  const s = JSON.parse(json);
  return {
    tasks: s.tasks,
    cost_usd: s.cost_usd,
    wal: s.wal,
    agents_recorded: s.agents_recorded,
    orchestrator_run: s.orchestrator.run_id,
  };
}

/**
 * `dr <prefix>list --from st --check`'s problems (it exits 5 with any): through the CLI when
 * `prefix` is given ("" or "archive-"), else in this process by what it runs (checkArchive).
 */
export async function checkedProblems(
  fx: ArchiveFixture,
  st: string,
  prefix?: string,
): Promise<ArchiveProblem[]> {
  if (prefix !== undefined) {
    const check = await fx.cli(["--json", "dr", `${prefix}list`, "--from", st, "--check"]);
    assert.equal(check.code, 5, check.stderr);
    return JSON.parse(check.stdout).problems as ArchiveProblem[];
  }
  // Loaded here: the many suites that import this module without these do not pay for them.
  const [{ listArchive }, { checkArchive }, { LocalStore }] = await Promise.all([
    import("../../../src/archive/catalog.js"),
    import("../../../src/archive/check.js"),
    import("../../../src/storage/local-store.js"),
  ]);
  const local = new LocalStore(st);
  return (await checkArchive(local, await listArchive(local))).problems;
}

export interface Restored {
  code: number | null;
  stderr: string;
  doc?: { wal: Record<string, { seq: number }>; broken?: { at_seq?: string } };
}

/**
 * `dr <prefix>restore --from st <point>` (`--at-seq RUN:SEQ`, `--at ISO` or `--latest`, maybe
 * `--last-consistent`) into `target`: through the CLI when `prefix` is given, else in this process
 * by what it runs (restoreToPoint; a refusal's exit code and message are its UserError's).
 */
export async function restored(
  fx: ArchiveFixture,
  st: string,
  point: string[],
  target: string,
  prefix?: string,
  /** The CLI's run with --json (its result as `doc`), else its human form (no `doc`). */
  json = true,
): Promise<Restored> {
  if (prefix !== undefined) {
    const form = json ? ["--json"] : [];
    const r = await fx.cli([...form, "dr", `${prefix}restore`, "--from", st, ...point], target);
    return { code: r.code, stderr: r.stderr, doc: json && r.code === 0 ? JSON.parse(r.stdout) : undefined };
  }
  const [{ restoreToPoint }, { UserError }, { LocalStore }] = await Promise.all([
    import("../../../src/archive/restore-point.js"),
    import("../../../src/errors/errors.js"),
    import("../../../src/storage/local-store.js"),
  ]);
  const seq = /^(.*):(\d+)$/.exec(point[1] ?? "");
  const at: RestorePoint =
    point[0] === "--at-seq"
      ? { kind: "seq", run: seq![1]!, seq: Number(seq![2]) }
      : point[0] === "--at"
        ? { kind: "time", atMs: Date.parse(point[1]!), text: point[1]! }
        : { kind: "latest" };
  try {
    const r = await restoreToPoint(new LocalStore(st), at, target, {
      source: st,
      auditKeyPath: path.join(path.dirname(target), "audit.key"),
      lastConsistent: point.includes("--last-consistent"),
    });
    return { code: 0, stderr: "", doc: r };
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    return { code: err.exitCode, stderr: err.message };
  }
}
