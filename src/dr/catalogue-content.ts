/**
 * `dr list --check --deep`, the content half: every backup at a catalogue location read whole
 * (decrypted when encrypted) and checked as `dr verify` reads an archive (manifest first, each
 * file's sha256 against the manifest). An encrypted backup without the key it needs is reported
 * as not opened, which is not a failure of the others; damage is.
 */
import { ExitCode, UserError } from "../errors/errors.js";
import type { ExpectedBackup } from "../storage/catalogue.js";
import type { BackupStore } from "../storage/store.js";
import { inspectArchive } from "./restore.js";
import { recordedDamage } from "./state-checks.js";

export interface ContentFinding {
  name: string;
  status: "ok" | "damaged" | "not-opened";
  detail: string;
  /** Why an archive was not opened: no key of its kind given, or the one given does not open it. */
  key?: "missing" | "wrong";
}

export interface ContentKeys {
  password?: string;
  identities?: readonly string[];
  /** Each archive's recipients' fingerprints as the catalogue knows them (wrong-identity messages). */
  fingerprintsOf?: (name: string) => readonly string[] | undefined;
  /**
   * What the audit chain recorded of each archive: a Fernet archive that fails authentication is
   * then told apart as a wrong password (bytes as written) or damage, as `dr verify` does.
   */
  expectedOf?: (name: string) => ExpectedBackup | undefined;
}

/** Why an archive cannot be opened with the keys given, before reading it (by its name). */
function missingKey(name: string, keys: ContentKeys): string | undefined {
  if (name.endsWith(".age") && keys.identities === undefined)
    return "encrypted to age recipients: give --identity-file (or BERNSTEIN_DR_IDENTITY_FILE) to open it";
  if (name.endsWith(".enc") && keys.password === undefined)
    return "encrypted with a password: give --password-file (or BERNSTEIN_DR_PASSWORD) to open it";
  return undefined;
}

async function checkOne(store: BackupStore, name: string, keys: ContentKeys): Promise<ContentFinding> {
  const missing = missingKey(name, keys);
  if (missing) return { name, status: "not-opened", detail: missing, key: "missing" };
  const expected = keys.expectedOf?.(name);
  const from = "the audit chain's record";
  try {
    const s = await inspectArchive(await store.get(name), {
      password: name.endsWith(".enc") ? keys.password : undefined,
      identities: name.endsWith(".age") ? keys.identities : undefined,
      recipientFingerprints: keys.fingerprintsOf?.(name),
      label: name,
      ...(typeof expected?.sha256 === "string"
        ? { expectSha256: expected.sha256, expectSha256From: from }
        : {}),
      ...(expected?.age ? { expectAge: expected.age, expectAgeFrom: from } : {}),
    });
    // Intact as written; damage its backup found in the workspace and copied is said all the same.
    const damage = recordedDamage(s.manifest_raw) ?? [];
    const held = damage.length ? `; ${damage.length} state warning(s), first: ${damage[0]}` : "";
    return {
      name,
      status: "ok",
      detail: `opened: ${s.file_count} files match the manifest${s.encrypted ? " (decrypted)" : ""}${held}`,
    };
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    // A key that does not open the archive says nothing about the archive's bytes.
    if (err.exitCode === ExitCode.BAD_PASSWORD)
      return { name, status: "not-opened", detail: err.message, key: "wrong" };
    return { name, status: "damaged", detail: err.message };
  }
}

/** Reads every named backup whole, one at a time (bounded memory: each is streamed). */
export async function checkContents(
  store: BackupStore,
  names: readonly string[],
  keys: ContentKeys,
): Promise<ContentFinding[]> {
  const out: ContentFinding[] = [];
  for (const name of names) out.push(await checkOne(store, name, keys));
  return out;
}
