/**
 * Which files of `.sdd/` a backup holds. The lists are the Python reference's
 * (`disaster_recovery.py` `_BACKUP_DIRS`, `_EXCLUDE_DIRS`, `_EXCLUDE_PATTERNS`) plus:
 *  - `backlog/claimed` and `backlog/failed`: our backlog has these states and the reference list
 *    misses them; a claim must never be lost, so they are included;
 *  - `runtime/snapshot/*`: the consistent-snapshot handshake files (transient by nature);
 * and minus:
 *  - `runtime/completed/*`: an attempt that finished while no orchestrator ran (or after a live
 *    backup's pause) has its outcome, cost included, only in its completion record; without it
 *    a restore re-queues the task, which runs a second time and loses the first run's cost.
 *  - `runtime/archive-key.json`: the WAL archiver's key of an archive encrypted to recipients,
 *    which must not travel in a backup (src/archive/local-key.ts);
 *  - `runtime/archive-status.json` and `runtime/replication/endpoint.json`: the running
 *    archiver's status (src/archive/health.ts) and the live replication process's address
 *    (src/replication/endpoint.ts), processes of this host, which a restored copy would take for
 *    its own;
 *  - the temp file of an atomic write, `.<name>.tmp-<pid>-<hex>` (durable.ts `tempPathFor`), in
 *    flight or left by a killed writer: never state, and the rename that would make it state
 *    replaces a file that the backup holds.
 */
import { isUtf8 } from "node:buffer";
import { lstatSync, readdirSync, type Dirent } from "node:fs";
import path from "node:path";
import { ExitCode, UserError } from "../errors/errors.js";
import { shellWord, shown } from "../workspace/shown-path.js";
import { fsPath, nameFromBytes } from "../workspace/raw-name.js";
import { NameGuard } from "./entry-policy.js";

/** The reference's included folders, in its order (what its manifest lists). */
export const REFERENCE_INCLUDED_DIRS = [
  "backlog/open",
  "backlog/done",
  "backlog/closed",
  "backlog/deferred",
  "backlog/manual",
  "metrics",
  "traces",
  "memory",
  "sessions",
  "decisions",
  "docs",
  "config",
  "archive",
  "agents",
  "index",
  "caching",
  "models",
  "audit",
  "runs",
  "runtime",
] as const;

export const INCLUDED_DIRS: readonly string[] = [
  "backlog/open",
  "backlog/claimed",
  "backlog/done",
  "backlog/failed",
  "backlog/closed",
  "backlog/deferred",
  "backlog/manual",
  ...REFERENCE_INCLUDED_DIRS.slice(5),
];

export const EXCLUDED_DIRS: readonly string[] = [
  "logs",
  "worktrees",
  "signals",
  "debug",
  "research",
  "default",
  "upgrades",
];

export const REFERENCE_EXCLUDED_PATTERNS = [
  "runtime/pids/*",
  "runtime/signals/*",
  "runtime/heartbeats/*",
  "runtime/hooks/*",
  "runtime/draining/*",
  "runtime/gates/*",
  "runtime/completed/*",
  "runtime/*.log",
  "runtime/*.log.[0-9]*",
  "runtime/*.kill",
  "runtime/*.pid",
  "runtime/access.jsonl*",
  "runtime/retrospective.md",
  "runtime/summary.md",
] as const;

export const EXCLUDED_PATTERNS: readonly string[] = [
  ...REFERENCE_EXCLUDED_PATTERNS.filter((p) => p !== "runtime/completed/*"),
  "runtime/snapshot/*",
  "runtime/archive-key.json",
  "runtime/archive-status.json",
  "runtime/replication/endpoint.json",
  "*/.*.tmp-[0-9]*-*",
];

/** Python fnmatch semantics: `*` matches anything (including `/`), `?` one char, `[...]` a class. */
export function fnmatchRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let cls = pattern.slice(i + 1, end).replace(/\\/g, "\\\\");
      if (cls.startsWith("!")) cls = "^" + cls.slice(1);
      re += `[${cls}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`, "s");
}

/**
 * Each pattern with the literal text its matches start with (up to its first wildcard): a path
 * that does not start with it is not tested against the expression, so a file outside
 * `runtime/` costs one expression, not seventeen.
 */
const PATTERN_RES = EXCLUDED_PATTERNS.map((p) => ({
  pattern: p,
  prefix: p.slice(0, p.search(/[*?[]|$/)),
  re: fnmatchRegExp(p),
}));

/** The pattern that excludes `rel` (a path relative to `.sdd/`, `/`-separated), if any. */
function excludedByPattern(rel: string): string | undefined {
  for (const { pattern, prefix, re } of PATTERN_RES) {
    if (rel.startsWith(prefix) && re.test(rel)) return `pattern ${pattern}`;
  }
  return undefined;
}

/** Why `rel` (a path relative to `.sdd/`, `/`-separated) is excluded, if it is. */
export function excludedBy(rel: string): string | undefined {
  const parts = rel.split("/");
  for (const part of parts.slice(0, -1)) {
    if (EXCLUDED_DIRS.includes(part)) return `excluded folder '${part}'`;
  }
  return excludedByPattern(rel);
}

/** A file to archive, as listed: its name only (the backup stats it once it has it open). */
export interface ListedFile {
  rel: string;
  /** Bytes when `rel` holds bytes that are not UTF-8 (raw-name.ts). */
  abs: string | Buffer;
}
export interface WalkedFile extends ListedFile {
  size: number;
  mode: number;
  mtimeMs: number;
}
export interface WalkedDir {
  rel: string;
  mode: number;
  mtimeMs: number;
}
export interface ExcludedEntry {
  path: string;
  reason: string;
  /** True for a whole folder that was not descended into. */
  folder?: boolean;
}
export interface ListResult {
  files: ListedFile[];
  dirs: WalkedDir[];
  excluded: ExcludedEntry[];
}
export interface WalkResult extends ListResult {
  files: WalkedFile[];
}

/**
 * Where the state a restored workspace needs lives: the WAL (and idempotency store), checkpoints,
 * the audit log, the cost ledger, the backlog, run records and config. A symbolic link or other
 * non-regular entry at, inside or above one of them would leave that state out of every backup
 * while backup, verify and drill all pass, so it refuses the backup instead.
 */
const STATE_PATHS: readonly string[] = [
  "runtime/wal",
  "runtime/checkpoints",
  "audit",
  "metrics/cost-ledger.jsonl",
  "backlog",
  "runs",
  "config",
];

function holdsState(rel: string): boolean {
  return STATE_PATHS.some((p) => rel === p || rel.startsWith(p + "/") || p.startsWith(rel + "/"));
}
function isIncludedDir(rel: string): boolean {
  return INCLUDED_DIRS.some((d) => rel === d || rel.startsWith(d + "/"));
}
function isAncestorOfIncluded(rel: string): boolean {
  return rel === "" || INCLUDED_DIRS.some((d) => d.startsWith(rel + "/"));
}
function byCodePoint(a: Entry, b: Entry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** A folder's entry with its name as raw-name.ts carries it. */
interface Entry {
  name: string;
  ent: Dirent | Dirent<Buffer>;
  /** The name holds bytes that are not UTF-8. */
  raw: boolean;
}

/**
 * The entries of `abs`. Read as UTF-8 first (most folders): a name that is not shows U+FFFD
 * there, and only then is the folder read again as bytes, each name taken as raw-name.ts does.
 */
function readEntries(abs: string | Buffer): Entry[] {
  const ents = readdirSync(abs, { withFileTypes: true });
  if (!ents.some((e) => e.name.includes("\uFFFD")))
    return ents.map((ent) => ({ name: ent.name, ent, raw: false }));
  return readdirSync(abs, { withFileTypes: true, encoding: "buffer" }).map((ent) => {
    const name = nameFromBytes(ent.name);
    return { name, ent, raw: !isUtf8(ent.name) };
  });
}

/**
 * Walks `.sdd/` in a stable order (code-point sorted names). Included regular files and folders
 * are returned with size, mode and mtime; everything else lands in `excluded` with the reason.
 * Excluded folders are not descended into (a worktree may hold a whole checkout). A name to
 * archive that a restore would refuse is a refused backup (see listWorkspace).
 */
export function walkWorkspace(root: string): WalkResult {
  const listed = listWorkspace(root);
  const files: WalkedFile[] = [];
  for (const f of listed.files) {
    let st;
    try {
      st = lstatSync(f.abs);
    } catch (err) {
      // A live orchestrator may move or delete a file between listing and stat: skip it.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    files.push({ ...f, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
  }
  return { ...listed, files };
}

/**
 * The walk without a stat of each file (folders are stat'ed): the names a backup opens, in the
 * same order. A backup reads size, mode and mtime from the open file (hash-pass.ts), so that
 * each file costs one stat, not two.
 *
 * Every name it would archive passes the restore's own rules (entry-policy.ts) or the walk throws
 * (exit 5, the name shown as a shell word): a backup a restore refuses, or one that leaves such a
 * file out, would be found missing only when it is needed. So does a symbolic link or other non-regular entry where state lives
 * (STATE_PATHS): the backup would leave out what is behind it.
 */
export function listWorkspace(root: string): ListResult {
  const result: ListResult = { files: [], dirs: [], excluded: [] };
  const guard = new NameGuard();
  const word = (rel: string): string => shellWord(shown(path.join(root, rel)));
  const visit = (rel: string, raw: boolean): void => {
    const abs = rel ? fsPath(root, rel) : root;
    // Names from readdir need no normalizing: a separator is enough (one join per folder).
    const prefix = typeof abs === "string" ? (abs.endsWith(path.sep) ? abs : abs + path.sep) : "";
    let entries: Entry[];
    try {
      entries = readEntries(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && rel) return; // removed while walking
      throw new Error(`backup: cannot list ${word(rel)}: ${(err as Error).message}`, { cause: err });
    }
    entries.sort(byCodePoint);
    const included = isIncludedDir(rel);
    const admit = (childRel: string, type: "file" | "dir"): void => {
      const problem = guard.problem(childRel, type);
      if (problem) throw unarchivable(word(childRel), problem.say(word));
    };
    for (const { name, ent, raw: rawName } of entries) {
      const childRel = rel ? `${rel}/${name}` : name;
      const childRaw = raw || rawName;
      // A name that is not UTF-8 reaches the file system as its bytes.
      const childAbs = childRaw ? fsPath(root, childRel) : prefix + name;
      if (ent.isDirectory()) {
        if (EXCLUDED_DIRS.includes(name)) {
          result.excluded.push({
            path: childRel + "/",
            reason: `excluded folder '${name}'`,
            folder: true,
          });
        } else if (isIncludedDir(childRel) || isAncestorOfIncluded(childRel)) {
          admit(childRel, "dir");
          const st = lstatSync(childAbs, { throwIfNoEntry: false });
          if (!st) continue;
          result.dirs.push({ rel: childRel, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
          visit(childRel, childRaw);
        } else {
          result.excluded.push({ path: childRel + "/", reason: "not a backed-up folder", folder: true });
        }
        continue;
      }
      // Before the folder test: a link where a state folder belongs is not "outside" them.
      if (!ent.isFile()) {
        const what = ent.isSymbolicLink() ? "symbolic link" : "not a regular file";
        if (holdsState(childRel) && !excludedByPattern(childRel)) throw linkedState(word(childRel), what);
        result.excluded.push({ path: childRel, reason: `${what}, never archived` });
        continue;
      }
      if (!included) {
        result.excluded.push({ path: childRel, reason: "outside the backed-up folders" });
        continue;
      }
      // No folder on the way is an excluded one: those are not descended into.
      const why = excludedByPattern(childRel);
      if (why) {
        result.excluded.push({ path: childRel, reason: why });
        continue;
      }
      admit(childRel, "file");
      result.files.push({ rel: childRel, abs: childAbs });
    }
  };
  visit("", false);
  return result;
}

/** The refusal of a backup that would leave out state behind an entry it never archives. */
function linkedState(word: string, what: string): UserError {
  return new UserError(
    `backup refused: ${word}: ${what} where the workspace's state lives, which a backup never archives, so the state behind it would be missing from the backup; put the folder or file itself there and back up again`,
    ExitCode.CORRUPT,
    { problem: "unarchivable-entry", path: word },
  );
}

/** The refusal of a backup that would hold a name its restore cannot recreate. */
function unarchivable(word: string, why: string): UserError {
  return new UserError(
    `backup refused: ${word}: ${why}, so a restore could not recreate it; rename it and back up again`,
    ExitCode.CORRUPT,
    { problem: "unarchivable-name", path: word },
  );
}
