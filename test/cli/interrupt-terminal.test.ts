/**
 * Ctrl-C typed at a terminal while a progress bar is drawn (dr backup, dr restore, s3rver behind
 * the harness proxy holding the transfer open): the bar is taken away and the interrupt's line
 * starts on a line of its own, not glued to the bar; exit 130, nothing partial left, the
 * existing workspace untouched.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { canRunOnTerminal, runCli, scratchDir, spawnCliOnTerminal, waitFor } from "../helpers.js";
import { makeSmallWorkspace, snapshotTree } from "../dr/support/workspace.js";
import { startS3Harness, type S3Harness } from "../storage/support/s3-harness.js";

const BUCKET = "tty-interrupt";
const CTRL_C = "\x03";
const INTERRUPTED = "bernstein: interrupted by SIGINT";

/**
 * What the terminal shows on the interrupt's line before it: nothing, if the line starts after a
 * newline or after the bar's line was erased (cursor to column 1, erase the line).
 */
function beforeInterruptLine(output: string): string {
  const at = output.indexOf(INTERRUPTED);
  assert.ok(at >= 0, `no interrupt line in ${JSON.stringify(output.slice(-400))}`);
  const line = output.slice(0, at).split(/\r?\n/).at(-1)!;
  const erased = line.lastIndexOf("\x1b[1G\x1b[2K");
  return erased >= 0 ? line.slice(erased + "\x1b[1G\x1b[2K".length) : line;
}

describe(
  "Ctrl-C on a terminal during a progress bar",
  { skip: !canRunOnTerminal() && "no script(1)" },
  () => {
    let h: S3Harness;
    let scratch: { dir: string; cleanup: () => Promise<void> };
    let sdd: string;
    let env: Record<string, string>;

    before(async () => {
      h = await startS3Harness({ buckets: [BUCKET] });
      scratch = await scratchDir("bernstein-tty-interrupt-");
      // Bigger than one 8 MiB part, so the upload is multipart and the download takes a while.
      const { ws, keyFile } = await makeSmallWorkspace(path.join(scratch.dir, "src"), {
        bigBytes: 9 * 1024 * 1024,
      });
      sdd = ws.root;
      env = {
        ...h.env,
        BERNSTEIN_AUDIT_KEY_PATH: keyFile,
        BERNSTEIN_BACKUP_LOCAL_DIR: path.join(scratch.dir, "local-copies"),
        HOME: scratch.dir,
      };
      const r = await runCli(["--sdd", sdd, "dr", "backup", "--to", `s3://${BUCKET}/b.tar.gz`], { env });
      assert.equal(r.code, 0, r.stderr);
    });
    after(async () => {
      await h?.close();
      await scratch?.cleanup();
    });
    beforeEach(() => h.setFault(undefined));

    async function interruptAt(
      args: string[],
      bar: RegExp,
      alsoWhen: () => Promise<boolean> = async () => true,
    ): Promise<{ code: number | null; output: string }> {
      const terminal = spawnCliOnTerminal(args, { env });
      await waitFor("the progress bar", async () => bar.test(terminal.output()) && (await alsoWhen()), {
        exited: terminal.done,
      });
      terminal.type(CTRL_C);
      const r = await terminal.done;
      h.setFault(undefined);
      assert.equal(r.code, 130, r.output);
      assert.equal(
        beforeInterruptLine(r.output),
        "",
        `the line is glued: ${JSON.stringify(r.output.slice(-300))}`,
      );
      const afterIt = r.output.slice(r.output.indexOf(INTERRUPTED));
      assert.equal(
        afterIt.trimEnd().split(/\r?\n/).length,
        1,
        `one line, no bar after it: ${JSON.stringify(afterIt)}`,
      );
      return r;
    }

    it("dr restore: the download's bar is cleared; no staging folder, the workspace there untouched", async () => {
      const target = path.join(scratch.dir, "restored", ".sdd");
      const first = await runCli(["--sdd", target, "dr", "restore", "--from", `s3://${BUCKET}/b.tar.gz`], {
        env,
      });
      assert.equal(first.code, 0, first.stderr);
      const before = snapshotTree(target);
      h.setFault((op) => (op === "GetObject" ? "stall" : undefined));
      const r = await interruptAt(
        ["--sdd", target, "dr", "restore", "--from", `s3://${BUCKET}/b.tar.gz`],
        /restoring \[#*-*\]/,
      );
      assert.match(r.output, /interrupted by SIGINT; removed the restore's staging folder /);
      assert.deepEqual(
        readdirSync(path.dirname(target)).filter((n) => n !== ".sdd"),
        [],
        "no staging folder, no kept copy",
      );
      assert.deepEqual(snapshotTree(target), before);
    });

    it("dr restore --dry-run (nothing partial to remove): the bar is cleared too, exit 130", async () => {
      h.setFault((op) => (op === "GetObject" ? "stall" : undefined));
      await interruptAt(
        ["dr", "restore", "--dry-run", "--from", `s3://${BUCKET}/b.tar.gz`],
        /reading \[#*-*\]/,
      );
    });

    it("dr backup: the upload's bar is cleared; no pending upload, no local copy", async () => {
      h.setFault((op) => (op === "UploadPart" ? "hold" : undefined));
      const r = await interruptAt(
        ["--sdd", sdd, "dr", "backup", "--to", `s3://${BUCKET}/held/x.tar.gz`],
        /(?:archiving|uploading) \[#*-*\]/,
        async () => (await h.pendingUploads(BUCKET)).length > 0,
      );
      assert.match(r.output, /interrupted by SIGINT; removed .*the unfinished upload/);
      assert.deepEqual(await h.pendingUploads(BUCKET), [], "no pending multipart upload");
      const copies = path.join(scratch.dir, "local-copies");
      assert.deepEqual(existsSync(copies) ? readdirSync(copies) : [], [], "no local copy");
    });
  },
);
