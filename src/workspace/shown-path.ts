/** How a path the command worked out is shown to people. */
import { isUtf8 } from "node:buffer";
import os from "node:os";
import path from "node:path";
import { nameToBytes } from "./raw-name.js";

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

/**
 * A path as one word a shell takes back (bash, zsh, ksh): as it is when nothing in it needs
 * quoting, in single quotes when it is printable NFC text, else as `$'…'` with every other byte
 * as `\xHH` (a string's escaped bytes, raw-name.ts, as the bytes they stand for). Names that look alike but differ (NFC and NFD, bytes that are not UTF-8) then read
 * differently, and can be pasted into `mv`.
 */
export function shellWord(p: string | Buffer): string {
  const bytes = typeof p === "string" ? nameToBytes(p) : p;
  const text = bytes.toString();
  if (isUtf8(bytes)) {
    if (/^[\w@%+=:,./-]+$/.test(text)) return text;
    // eslint-disable-next-line no-control-regex
    if (text.normalize("NFC") === text && !/[\u0000-\u001f\u007f-\u009f]/.test(text))
      return `'${text.replace(/'/g, "'\\''")}'`;
  }
  let out = "$'";
  for (const b of bytes) {
    if (b === 0x27 || b === 0x5c) out += "\\" + String.fromCharCode(b);
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += "\\x" + b.toString(16).padStart(2, "0");
  }
  return out + "'";
}
