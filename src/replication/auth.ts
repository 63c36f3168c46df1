/**
 * Bearer-token authentication for the replication transport. The token lives in a file that
 * only its owner may read (mode 0600, like the audit key); requests are compared in constant
 * time so a wrong guess says nothing about how close it was.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { ExitCode, UserError } from "../errors/errors.js";

/** The environment variable that holds the token when no token file is given. */
export const TOKEN_ENV = "BERNSTEIN_REPLICATION_TOKEN";

/** Reads and checks a token file: must exist, be mode 0600 (no group/other bits), hold a non-empty token. */
export async function loadTokenFile(file: string): Promise<string> {
  const st = await stat(file).catch(() => undefined);
  if (!st || !st.isFile()) {
    throw new UserError(`replication token file ${file}: no such file`, ExitCode.USAGE);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new UserError(
      `replication token file ${file}: mode ${(st.mode & 0o777).toString(8)} is readable by others; run \`chmod 600 ${file}\``,
      ExitCode.USAGE,
    );
  }
  const token = (await readFile(file, "utf8")).trim();
  if (token.length < 16) {
    throw new UserError(
      `replication token file ${file}: token must be at least 16 characters`,
      ExitCode.USAGE,
    );
  }
  return token;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/**
 * True when the `Authorization` header carries exactly `Bearer <token>`. Both sides are hashed
 * first so timingSafeEqual always compares 32 bytes, whatever the presented length.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = header?.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : "";
  const ok = timingSafeEqual(digest(presented), digest(token));
  return ok && presented.length > 0;
}
