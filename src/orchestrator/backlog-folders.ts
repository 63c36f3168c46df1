/**
 * The task files the backlog folders hold, by name alone, and reading them as of one moment while
 * a running orchestrator renames files between them. Apart from the task files' parsing (tasks.ts,
 * which loads the YAML parser and the schema library): `status` counts tasks per folder and needs
 * neither.
 */
import { readdir } from "node:fs/promises";
import { ExitCode, UserError } from "../errors/errors.js";
import type { TaskState, Workspace } from "../workspace/layout.js";

const TASK_FILE_SUFFIX = /\.(md|ya?ml)$/i;

function isTaskFileName(name: string): boolean {
  return !name.startsWith(".") && TASK_FILE_SUFFIX.test(name);
}

/**
 * The task id a file's name gives (`T-1.md` is T-1's file): a file named after a task the WAL
 * created is that task's, whatever it holds, since the WAL has its spec.
 */
export function taskIdOfFileName(name: string): string {
  return name.replace(TASK_FILE_SUFFIX, "");
}

/** Names of the task files in one state folder (dotfiles, temp files and other names skipped). */
export async function listStateFolder(ws: Workspace, state: TaskState): Promise<string[]> {
  try {
    return (await readdir(ws.backlogDir(state))).filter(isTaskFileName).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/** The task file names of each folder asked for, in the order asked. */
export type BacklogListing = ReadonlyArray<{ state: TaskState; names: readonly string[] }>;

/** What a backlog reader returns when a file of the listing it was given is gone: a move raced it. */
export const MOVED: unique symbol = Symbol("a listed task file moved");

/**
 * How many times a read is tried before giving up. An orchestrator's move is a rename plus two
 * fsyncs and a WAL commit, so a read of a few folders nearly always fits between two of them.
 */
const STABLE_READ_ATTEMPTS = 50;

async function listFolders(ws: Workspace, states: readonly TaskState[]): Promise<BacklogListing> {
  const listing: { state: TaskState; names: string[] }[] = [];
  for (const state of states) listing.push({ state, names: await listStateFolder(ws, state) });
  return listing;
}

function sameListing(a: BacklogListing, b: BacklogListing): boolean {
  return a.every(
    (f, i) => f.names.length === b[i]!.names.length && f.names.every((n, j) => n === b[i]!.names[j]),
  );
}

/**
 * `read` over the folders' listing, as of one moment. The folders are listed one after another, so
 * a file a running orchestrator renames between two of them (open → claimed → done | failed, and
 * back to open on a retry or an interrupt) would be seen in both or in neither; the listing is
 * therefore taken again after `read`, and read again until the two listings are the same and
 * `read` found every file it was given (else it returns MOVED). A file that really is in two
 * folders is in both listings every time, so it is still seen twice.
 */
export async function readBacklogStable<R>(
  ws: Workspace,
  states: readonly TaskState[],
  read: (listing: BacklogListing) => Promise<R | typeof MOVED>,
): Promise<R> {
  let listing = await listFolders(ws, states);
  for (let attempt = 1; ; attempt++) {
    const result = await read(listing);
    const again = await listFolders(ws, states);
    if (result !== MOVED && sameListing(listing, again)) return result;
    if (attempt >= STABLE_READ_ATTEMPTS)
      throw new UserError(
        `${ws.shownRoot}: the backlog folders changed during each of ${STABLE_READ_ATTEMPTS} reads (task files moved or added meanwhile); try again`,
        ExitCode.LOCKED,
      );
    listing = again;
  }
}

/** The task file names of the folders as of one moment (see readBacklogStable). */
export function listBacklog(ws: Workspace, states: readonly TaskState[]): Promise<BacklogListing> {
  return readBacklogStable(ws, states, async (listing) => listing);
}
