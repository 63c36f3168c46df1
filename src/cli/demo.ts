/**
 * `npm run demo`: the README's main command. Builds a demo workspace in a temp folder (generated
 * state in the Python-compatible formats: valid WAL hash chains, an HMAC audit chain with its
 * own key, backlog, checkpoints and the transient files a backup must leave out), then runs an
 * encrypted restore drill on it and prints the report. Touches nothing outside the temp folder
 * (the audit key lives there too). `--keep` keeps the folder; `--files N` sizes the workspace.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runDrill } from "../dr/drill.js";
import { openWorkspace } from "../workspace/layout.js";
import { Output } from "./output.js";
import { printDrill } from "./commands/dr.js";

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const json = args.includes("--json");
const keep = args.includes("--keep");
const files = Number(flag("--files") ?? 2000);

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const dir = await mkdtemp(path.join(os.tmpdir(), "bernstein-demo-"));
const keyFile = path.join(dir, "state", "audit.key");
process.env.BERNSTEIN_AUDIT_KEY_PATH = keyFile;
const out = new Output({ json, quiet: false });
try {
  const made = JSON.parse(
    execFileSync(
      process.execPath,
      [path.join(repo, "bench", "make-workspace.mjs"), dir, "--files", String(files), "--key-out", keyFile],
      {
        encoding: "utf8",
      },
    ),
  ) as { included_files: number; excluded_files: number; bytes: number };
  const ws = await openWorkspace(path.join(dir, ".sdd"));
  out.line(`Demo workspace: ${ws.root}`);
  out.line(
    `  ${made.included_files} files to back up, ${made.excluded_files} transient files a backup leaves out, ${made.bytes} bytes`,
  );
  out.line(`  audit key (demo only): ${keyFile}`);
  out.line("");
  const report = await runDrill(ws, {
    password: "demo passphrase",
    keepDir: keep ? path.join(dir, "drill") : undefined,
  });
  out.result({ demo_dir: dir, workspace: made, ...report }, () => printDrill(out, report));
  if (keep) out.line(`\nKept: ${dir}`);
  process.exitCode = report.ok ? 0 : 1;
} finally {
  if (!keep) await rm(dir, { recursive: true, force: true });
}
