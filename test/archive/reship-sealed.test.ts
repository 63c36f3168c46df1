/**
 * "Objects written twice are identical" for encrypted archives: a real `dr archive` (password,
 * then age recipient) SIGKILLed while the put of a WAL segment is under way at the S3-compatible
 * server (the proxy has read its body and holds the answer), then restarted: the store does not
 * list the segment, so the restart seals the same range again under the same name, and must
 * store the very bytes the killed one sent (the late put may still land after it). Also: a
 * segment sealed with a random nonce (as archivers before deterministic sealing wrote them) is
 * still read by restore and `--check`.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { listArchive, readObject, readSegmentIndex, segmentMetadata } from "../../src/archive/catalog.js";
import { readArchiveStatus } from "../../src/archive/health.js";
import { parseArchiveKey } from "../../src/archive/names.js";
import { openSegment, unlockGeneration } from "../../src/archive/sealing.js";
import { StreamSealer, PAYLOAD_NONCE_BYTES } from "../../src/dr/age/stream.js";
import { FernetEncryptor } from "../../src/dr/fernet.js";
import { openCatalogue } from "../../src/storage/open-store.js";
import { runMain, spawnCli, waitFor } from "../helpers.js";
import { openS3Archive, type S3ArchiveSetup } from "./support/s3-archive.js";
import { appendDecisions, archiveFixture, type ArchiveFixture } from "./support/archive-workspace.js";

const BUCKET = "wal-archive-reship";
const RUN = "run-reship";

/** The process is stopped (SIGSTOP has taken effect): it reads nothing until SIGCONT. */
const stopped = async (pid: number): Promise<boolean> =>
  /^\d+ \(.*\) T /.test(await readFile(`/proc/${pid}/stat`, "utf8"));

/** `dr archive-restore --from <from...> --latest` into a new folder: the whole WAL, up to `seq`. */
async function restoresWhole(g: ArchiveFixture, from: string[], seq: number): Promise<void> {
  const sdd = path.join(g.dir, "restored", ".sdd");
  const r = await g.cli(["--json", "dr", "archive-restore", "--latest", "--from", ...from], sdd);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).wal[RUN].seq, seq);
  assert.equal(
    await readFile(path.join(sdd, "runtime", "wal", `${RUN}.wal.jsonl`), "utf8"),
    await readFile(g.ws.walFile(RUN), "utf8"),
  );
}

interface Scheme {
  name: string;
  /** The archiver's key arguments, and the reader's. */
  keys: (g: ArchiveFixture) => Promise<{ write: string[]; read: string[] }>;
}

const SCHEMES: Scheme[] = [
  {
    name: "password",
    keys: async (g) => {
      const pw = path.join(g.dir, "pw");
      await writeFile(pw, "correct horse battery staple\n", { mode: 0o600 });
      return { write: ["--encrypt", "--password-file", pw], read: ["--password-file", pw] };
    },
  },
  {
    name: "recipient",
    keys: async (g) => {
      const file = path.join(g.dir, "id.txt");
      // The key is what matters here, not its command's being a process: main() in this process.
      const r = await runMain(["key", "generate", "-o", file], { env: g.env });
      assert.equal(r.code, 0, r.stderr);
      return { write: ["--recipient", r.stdout.trim()], read: ["--identity-file", file] };
    },
  },
];

describe("encrypted segments sent again after a kill are identical", () => {
  let s: S3ArchiveSetup;
  before(async () => {
    s = await openS3Archive(BUCKET, "bernstein-archive-reship-");
  });
  after(async () => {
    await s.close();
  });

  for (const scheme of SCHEMES)
    it(`${scheme.name}: killed with a segment's put under way, the restart stores the same bytes under its name`, async () => {
      const { h } = s;
      const prefix = `${scheme.name}/`;
      const url = `s3://${BUCKET}/${prefix}`;
      const remote = ["--endpoint", h.endpoint, "--retries", "0"];
      const g = await archiveFixture(path.join(s.dir, scheme.name), h.env);
      const keys = await scheme.keys(g);
      const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
      await appendDecisions(g.ws, RUN, 5);
      const { child, done } = spawnCli(
        ["--sdd", g.sdd, "dr", "archive", "--to", url, "--interval", "10ms", ...remote, ...keys.write],
        { env: g.env, cwd: g.dir },
      );
      await waitFor(
        "the archiver's first cycle",
        async () => {
          const st = await readArchiveStatus(g.sdd);
          return st !== undefined && st.pid === child.pid && st.caught_up_at !== null;
        },
        { exited: done },
      );
      // Stopped while the decisions are made, the archiver then ships them as one segment: the
      // range the restart will find unshipped, so the same name.
      child.kill("SIGSTOP");
      await waitFor("the archiver stopped", () => stopped(child.pid!), { exited: done });
      await appendDecisions(g.ws, RUN, 5, 5);
      const wal = (key: string) => {
        const k = parseArchiveKey(key.slice(prefix.length));
        return key.startsWith(prefix) && k?.kind === "segment" && k.stream.startsWith("runtime/wal/");
      };
      h.setFault((op, _nth, key) => (op === "PutObject" && wal(key) ? "hold" : undefined));
      child.kill("SIGCONT");
      const first = await waitFor("the WAL segment's put", () => h.held.find((p) => wal(p.key)), {
        exited: done,
      });
      child.kill("SIGKILL");
      assert.equal((await done).signal, "SIGKILL");
      h.setFault(undefined);
      const name = first.key.slice(prefix.length);
      assert.equal(await readSegmentIndex(store, name), undefined, "the held put did not reach the store");

      const again = await g.cli(["--json", "dr", "archive", "--to", url, "--once", ...remote, ...keys.write]);
      assert.equal(again.code, 0, again.stderr);
      const stored = await readObject(store, name);
      assert.ok(
        stored.equals(first.body),
        `${name}: the restart stored other bytes than the killed archiver sent`,
      );

      await restoresWhole(g, [url, ...remote, ...keys.read], 9);
    });

  for (const scheme of SCHEMES)
    it(`${scheme.name}: a segment sealed with a random nonce (earlier archivers) is still restored and checked`, async () => {
      const { h } = s;
      const url = `s3://${BUCKET}/random-${scheme.name}/`;
      const remote = ["--endpoint", h.endpoint, "--retries", "0"];
      const g = await archiveFixture(path.join(s.dir, `random-${scheme.name}`), h.env);
      const keys = await scheme.keys(g);
      const store = await openCatalogue(url, { endpoint: h.endpoint, retries: 0 });
      // Shipping the segments to reseal: the CLI's main() in this process (runMain), as a real
      // `--once` of the same store and keys is run by the kill cases above.
      const once = () =>
        runMain(
          ["--sdd", g.sdd, "--json", "dr", "archive", "--to", url, "--once", ...remote, ...keys.write],
          {
            env: g.env,
            cwd: g.dir,
          },
        );
      await appendDecisions(g.ws, RUN, 3);
      assert.equal((await once()).code, 0);
      await appendDecisions(g.ws, RUN, 4, 3);
      const shipped = await once();
      assert.equal(shipped.code, 0, shipped.stderr);

      // Reseal the WAL segment as the previous sealSegment did: a random IV (and the current time)
      // or a random age payload nonce, under the same generation key.
      const [gen] = (await listArchive(store)).generations;
      const [seg] = gen!.segments.get(`runtime/wal/${RUN}.wal.jsonl`)!;
      const key = (await unlockGeneration(gen!.generation, gen!.record!.encryption, {
        ...(scheme.name === "password"
          ? { password: "correct horse battery staple" }
          : {
              identities: (await readFile(path.join(g.dir, "id.txt"), "utf8"))
                .split("\n")
                .filter((l) => l.startsWith("AGE-SECRET")),
            }),
      }))!;
      const ix = (await readSegmentIndex(store, seg!.key))!;
      // What the seal holds (the segment's lines, compressed), sealed again the old way.
      const opened = await openSegment(key, await readObject(store, seg!.key));
      let old: Buffer;
      if (key.scheme === "fernet") {
        const enc = new FernetEncryptor(key.key, Buffer.alloc(0));
        old = Buffer.concat([enc.update(opened), enc.final()]);
      } else {
        const nonce = randomBytes(PAYLOAD_NONCE_BYTES);
        const sealer = new StreamSealer(key.key, nonce);
        old = Buffer.concat([nonce, ...sealer.update(opened), sealer.final()]);
      }
      const oldIx = { ...ix, sha256: createHash("sha256").update(old).digest("hex") };
      await store.put(seg!.key, Readable.from([old]), {
        sha256: oldIx.sha256,
        metadata: segmentMetadata(oldIx),
      });
      assert.ok((await readObject(store, seg!.key)).equals(old));

      const check = await g.cli([
        "--json",
        "dr",
        "archive-list",
        "--from",
        url,
        "--check",
        ...remote,
        ...keys.read,
      ]);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      await restoresWhole(g, [url, ...remote, ...keys.read], 6);
    });
});
