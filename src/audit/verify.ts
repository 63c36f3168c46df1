/**
 * Streaming audit chain verification across every day file. Each break is reported with its
 * file and line; verification goes on after a break so one run lists every damaged line.
 *
 * Checks per line: it parses; it is byte-for-byte the line Python writes for that entry (so a
 * flipped byte in whitespace or an escape is caught too); its `prev_hmac` continues the chain;
 * its `hmac` is right for the key.
 */
import path from "node:path";
import { parseJson, type JsonValue } from "../json/canonical.js";
import { asJsonObject } from "../json/object.js";
import { Workspace } from "../workspace/layout.js";
import { readLinesForward } from "../workspace/lines.js";
import { auditLine, computeAuditHmac, GENESIS_HMAC } from "./entry.js";
import type { AuditKey } from "./key.js";
import { listAuditFiles } from "./files.js";

export interface AuditBreak {
  /** Absolute path of the day file. */
  file: string;
  /** 1-based line number. */
  line: number;
  message: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Entries read (parsed lines), damaged ones included. */
  entries: number;
  files: string[];
  /** The hmac a next entry would chain onto (last readable entry), genesis for an empty log. */
  last_hmac: string;
  errors: AuditBreak[];
  /**
   * No entry's HMAC verifies, yet every entry chains onto the one before it and nothing else is
   * wrong: the log was signed with another key (or every entry altered, which a key cannot tell
   * apart). One cause, not one break per entry.
   */
  signed_with_another_key: boolean;
}

export async function verifyAuditLog(
  ws: Workspace | string,
  key: Buffer | AuditKey,
): Promise<AuditVerifyResult> {
  const dir = ws instanceof Workspace ? ws.auditDir : ws;
  const keyBytes = Buffer.isBuffer(key) ? key : key.key;
  const names = await listAuditFiles(dir);
  const files = names.map((n) => path.join(dir, n));
  const errors: AuditBreak[] = [];
  let entries = 0;
  // hmacs a next line may legitimately chain onto: the stored one and, if the stored one was
  // altered, the one the content implies (so one altered line is one report, not two).
  let expectedPrev = new Set<string>([GENESIS_HMAC]);
  let resync = false;
  let lastHmac = GENESIS_HMAC;
  let verified = 0;
  let onlyHmacMismatches = true;
  for (let f = 0; f < files.length; f++) {
    const file = files[f];
    for await (const line of readLinesForward(file)) {
      const report = (message: string, hmacMismatch = false) => {
        errors.push({ file, line: line.lineNo, message });
        if (!hmacMismatch) onlyHmacMismatches = false;
      };
      if (!line.terminated) {
        // Only a file's final line can lack its newline; if it parses it is checked below.
        let parsed: JsonValue | undefined;
        try {
          parsed = parseJson(line.text);
        } catch {
          parsed = undefined;
        }
        if (parsed === undefined) {
          report(
            `torn last line: ${Buffer.byteLength(line.text)} bytes without a newline (an interrupted append); ` +
              `the ${entries} entries before it are kept`,
          );
          // Not resynced: a torn append was never acknowledged, so the next writer chained onto
          // the last readable entry; the chain must continue from there.
          continue;
        }
      }
      let parsed: JsonValue;
      try {
        parsed = parseJson(line.text);
      } catch (err) {
        report(`not valid JSON (${(err as Error).message})`);
        resync = true;
        continue;
      }
      const entry = asJsonObject(parsed);
      if (!entry || typeof entry.hmac !== "string" || typeof entry.prev_hmac !== "string") {
        report("not an audit entry (no hmac / prev_hmac)");
        resync = true;
        continue;
      }
      entries++;
      const computed = computeAuditHmac(keyBytes, entry);
      const hmacOk = computed === entry.hmac;
      const chainOk = resync || expectedPrev.has(entry.prev_hmac);
      if (!chainOk) {
        report(
          `chain break: prev_hmac ${entry.prev_hmac.slice(0, 16)}… does not continue the previous entry`,
        );
      }
      if (!hmacOk) {
        report(HMAC_MISMATCH, true);
      } else if (auditLine(entry) !== line.text) {
        report("line differs from its canonical form: bytes outside the signed content were altered");
      }
      if (hmacOk) verified++;
      expectedPrev = new Set([entry.hmac, computed]);
      resync = false;
      lastHmac = entry.hmac;
    }
  }
  return {
    ok: errors.length === 0,
    entries,
    files,
    last_hmac: lastHmac,
    errors,
    signed_with_another_key: entries > 0 && verified === 0 && onlyHmacMismatches,
  };
}

const HMAC_MISMATCH = "HMAC mismatch: the entry was altered or signed with another key";

/**
 * A broken chain in one line: the wrong key when no entry verifies with it, else the number of
 * breaks and the first (its file as `showFile` gives it). `keyNamed`: the key as people know it.
 */
export function auditBreakSummary(
  r: AuditVerifyResult,
  keyNamed: string,
  showFile: (file: string) => string,
): string {
  if (r.signed_with_another_key) {
    return `none of the ${r.entries} entries verifies with ${keyNamed}: the log was signed with another key (or every entry was altered)`;
  }
  const e = r.errors[0]!;
  return `${r.errors.length} break(s); first at ${showFile(e.file)}:${e.line}: ${e.message}`;
}
