/** How a path the command worked out is shown to people. */
import os from "node:os";
import path from "node:path";

/**
 * A path the command worked out (a resolved target, a catalogue's file), as the user would type
 * it: relative to the cwd when inside it. A URL (s3://) is left as it is. What the user typed is
 * echoed as typed, not through this.
 */
export const shown = (p: string): string => {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p)) return p;
  const rel = path.relative(process.cwd(), p);
  const outside = rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel);
  return rel && !outside ? rel : p;
};

/**
 * A workspace folder that a record names with its host (an archive generation's), as people read
 * it: `FOLDER on HOST`, the folder shown as above when it is on this host.
 */
export const shownOnHost = (host: string, folder: string): string =>
  `${host === os.hostname() ? shown(folder) : folder} on ${host}`;
