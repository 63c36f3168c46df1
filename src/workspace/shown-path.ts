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
  `${shellWord(host === os.hostname() ? shown(folder) : folder)} on ${shellWord(host)}`;

// C0, DEL and C1: what a terminal may take as a command (a newline that fakes a line, ESC).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
// eslint-disable-next-line no-control-regex
const CONTROL_ONE = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Free text that came from an archive, a store or the network (a record's cause, a peer's
 * message), for a human line: every control character as `\xHH`, the rest as it is. A name (a
 * path, a host, a region) goes through `shellWord` instead, which also shows where it ends.
 */
export const printable = (text: string): string =>
  text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);

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
    if (text.normalize("NFC") === text && !CONTROL_ONE.test(text)) return `'${text.replace(/'/g, "'\\''")}'`;
  }
  let out = "$'";
  for (const b of bytes) {
    if (b === 0x27 || b === 0x5c) out += "\\" + String.fromCharCode(b);
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += "\\x" + b.toString(16).padStart(2, "0");
  }
  return out + "'";
}
