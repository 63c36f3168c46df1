/**
 * Which archive entries a restore accepts: only regular files and folders, under names that
 * cannot escape or alias the destination. Links of any kind, devices, FIFOs and unknown types
 * are hostile; so are absolute paths, drive letters, `.`/`..`/empty components, backslashes,
 * NUL, duplicates, two names equal after Unicode NFC normalization, and anything below a file.
 * A backup applies the same rules to the names it would archive (walk.ts). A name that is not
 * UTF-8 is none of these: it is carried as its bytes (raw-name.ts), as Python's tarfile does.
 */
import { archiveError } from "./archive-error.js";
import { nameByteLength } from "../workspace/raw-name.js";

/** The longest entry name accepted (staging-writer.ts relies on it). */
export const MAX_NAME_BYTES = 4000;

/** Entry types that are never restored, with the word a message uses for them. */
export const HOSTILE_TYPES: Record<string, string> = {
  Link: "hard link",
  SymbolicLink: "symbolic link",
  CharacterDevice: "character device",
  BlockDevice: "block device",
  FIFO: "FIFO",
};

function pathProblem(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.includes("\0")) return "NUL in name";
  if (name.startsWith("/")) return "absolute path";
  if (/^[A-Za-z]:/.test(name)) return "drive-letter path";
  if (name.includes("\\")) return "backslash in name";
  // Linux's limits (PATH_MAX, NAME_MAX); a longer name could not be created anyway.
  if (nameByteLength(name) > MAX_NAME_BYTES) return `name longer than ${MAX_NAME_BYTES} bytes`;
  for (const part of name.split("/")) {
    if (part === "..") return "'..' in path";
    if (part === "" || part === ".") return "non-normalized path";
    // 85 UTF-16 units are at most 255 UTF-8 bytes: only longer parts need counting.
    if (part.length > 85 && nameByteLength(part) > 255) return "name component longer than 255 bytes";
  }
  return undefined;
}

/**
 * What is wrong with an entry's name; `say` words it, quoting names (this one's earlier twin
 * among them) as the caller shows names: a restore as JSON strings, a backup as a shell would.
 */
export interface NameProblem {
  say(quote: (name: string) => string): string;
}

/**
 * Validates the tree shape: names, duplicates (also after NFC), nothing below a file. A restore
 * refuses an archive with such an entry; a backup refuses to write one (walk.ts), so that no
 * backup is ever written that its restore would refuse.
 */
export class NameGuard {
  private readonly seen = new Map<string, { type: "file" | "dir"; raw: string }>();

  /** What is wrong with `raw` as the next entry, or undefined (it is then one of those seen). */
  problem(raw: string, type: "file" | "dir"): NameProblem | undefined {
    const problem = pathProblem(raw);
    if (problem) return { say: () => problem };
    const key = raw.normalize("NFC");
    const prior = this.seen.get(key);
    if (prior) {
      if (prior.raw === raw) return { say: () => "duplicate name" };
      return { say: (q) => `same name as ${q(prior.raw)} after Unicode normalization` };
    }
    for (let cut = key.indexOf("/"); cut > 0; cut = key.indexOf("/", cut + 1)) {
      const anc = this.seen.get(key.slice(0, cut));
      if (anc?.type === "file") return { say: (q) => `below the file ${q(anc.raw)}` };
    }
    this.seen.set(key, { type, raw });
    return undefined;
  }

  /** Throws the restore's refusal (exit 5) when `raw` is not a name it recreates. */
  check(raw: string, type: "file" | "dir"): void {
    const problem = this.problem(raw, type);
    if (problem) {
      const q = (name: string): string => JSON.stringify(name);
      throw archiveError("hostile", `hostile entry ${q(raw)}: ${problem.say(q)}`);
    }
  }
}
