/**
 * Checks that WAL lines continue a run's hash chain: consecutive seq, prev_hash equal to the
 * previous entry_hash, and entry_hash equal to the SHA-256 of the canonical JSON of the entry
 * without entry_hash, and the line byte-exact (docs/wal.md). Replication checks every line a
 * follower receives before appending it, and every WAL a base snapshot brings
 * (`cutAtFirstBreak`). Any failure is an integrity error: the follower stops applying and
 * reports it.
 */
import { parseJsonCheckingTokens } from "../json/canonical.js";
import type { JsonObject } from "../json/object.js";
import { GENESIS_HASH, NOT_EXACT, digestParsedEntry } from "./entry.js";
import { bytesEqualText, confirmedLine, readCanonicalLine } from "./canonical-line.js";

export { GENESIS_HASH };

export class IntegrityError extends Error {
  constructor(
    message: string,
    readonly runId: string,
    readonly seq: number,
  ) {
    super(message);
    this.name = "IntegrityError";
  }
}

export interface ChainTail {
  seq: number;
  hash: string;
}

/**
 * Verifies `lines` continue `tail` (seq −1 and the genesis hash for an empty run) and returns
 * the new tail. Throws IntegrityError naming the first bad line; nothing after it is accepted.
 */
export function verifyContinuation(runId: string, tail: ChainTail, lines: string[]): ChainTail {
  const r = verifyPrefix(runId, tail, lines);
  if (r.error) throw r.error;
  return r.tail;
}

/** Like verifyContinuation, but returns how many leading lines are valid and the first error. */
export function verifyPrefix(
  runId: string,
  tail: ChainTail,
  lines: string[],
): { tail: ChainTail; valid: number; error: IntegrityError | null } {
  let cur = tail;
  let valid = 0;
  try {
    for (const line of lines) {
      cur = verifyOne(runId, cur, line);
      valid++;
    }
  } catch (err) {
    if (err instanceof IntegrityError) return { tail: cur, valid, error: err };
    throw err;
  }
  return { tail: cur, valid, error: null };
}

function verifyOne(runId: string, tail: ChainTail, line: string): ChainTail {
  const cur = tail;
  const confirmed = continuesCanonically(tail, line);
  if (confirmed) return confirmed;
  {
    const expected = cur.seq + 1;
    let entry: Record<string, unknown>;
    let tokensCanonical: boolean;
    try {
      const { value: v, canonical } = parseJsonCheckingTokens(line);
      tokensCanonical = canonical;
      if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      entry = v as Record<string, unknown>;
    } catch (err) {
      throw new IntegrityError(
        `${runId}#${expected}: not a WAL entry (${(err as Error).message})`,
        runId,
        expected,
      );
    }
    if (entry.seq !== expected) {
      throw new IntegrityError(
        `${runId}: expected seq ${expected}, got ${String(entry.seq)}`,
        runId,
        expected,
      );
    }
    if (entry.prev_hash !== cur.hash) {
      throw new IntegrityError(
        `${runId}#${expected}: chain break: prev_hash ${String(entry.prev_hash).slice(0, 12)}… does not continue ${cur.hash.slice(0, 12)}…`,
        runId,
        expected,
      );
    }
    const { hash: actual, exact } = digestParsedEntry(
      entry as JsonObject,
      line,
      tokensCanonical && Buffer.byteLength(line) === line.length,
    );
    if (entry.entry_hash !== actual) {
      throw new IntegrityError(
        `${runId}#${expected}: entry_hash does not match its content (tampered entry)`,
        runId,
        expected,
      );
    }
    if (!exact) throw new IntegrityError(`${runId}#${expected}: ${NOT_EXACT}`, runId, expected);
    return { seq: expected, hash: actual };
  }
}

/**
 * The fast path of wal verify for one line: a line in the writers' canonical form whose hash,
 * seq and link check out is taken without parsing; anything else goes through the parser,
 * which decides and names the problem.
 */
function continuesCanonically(tail: ChainTail, line: string): ChainTail | undefined {
  const bytes = Buffer.from(line, "utf8");
  if (readCanonicalLine(bytes, 0, bytes.length) !== bytes.length) return undefined;
  const c = confirmedLine;
  if (c.seq !== tail.seq + 1 || !bytesEqualText(bytes, c.prevStart, c.prevEnd, tail.hash)) return undefined;
  return { seq: c.seq, hash: c.hash };
}
