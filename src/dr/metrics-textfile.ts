/**
 * One node_exporter textfile-collector file shared by several writers (`dr backup` and the WAL
 * archiver): each rewrites only its own family of metrics (a name prefix) and keeps the other
 * lines as they are, so pointing both at one `--metrics-file` loses neither. The replace is
 * atomic; two writers racing may drop the other's newest values until its next write (the
 * archiver's comes within a cycle) — separate files in the collector's folder never race.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { atomicWriteFile } from "../workspace/durable.js";

/** A metric's type and help text. */
export type MetricSpec = readonly ["gauge" | "counter", string];

/** A label value escaped as the text format wants it. */
export function labelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** The `{sdd="..."}` label that keeps the series of several workspaces on one host apart. */
export const workspaceLabels = (sdd: string): string => `{sdd="${labelValue(path.resolve(sdd))}"}`;

/** The file's lines that belong to another family (absent or unreadable file: none). */
async function otherFamilies(file: string, prefix: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  const mine = (line: string): boolean => {
    const name = line.startsWith("# ") ? line.split(" ")[2] : line;
    return (name ?? "").startsWith(prefix);
  };
  return text.split("\n").filter((l) => l.trim() !== "" && !mine(l));
}

/** The HELP, TYPE and sample lines of every metric of `specs` that has a value. */
export function familyLines(
  prefix: string,
  specs: Record<string, MetricSpec>,
  values: Partial<Record<string, number>>,
  labels: string,
): string[] {
  const lines: string[] = [];
  for (const [name, [type, help]] of Object.entries(specs)) {
    const v = values[name];
    if (v === undefined) continue;
    lines.push(
      `# HELP ${prefix}${name} ${help}`,
      `# TYPE ${prefix}${name} ${type}`,
      `${prefix}${name}${labels} ${v}`,
    );
  }
  return lines;
}

/** Rewrites the family `prefix` of `file` with `lines`, keeping every other family's lines. */
export async function rewriteFamily(file: string, prefix: string, lines: string[]): Promise<void> {
  const kept = await otherFamilies(file, prefix);
  await atomicWriteFile(file, [...kept, ...lines].join("\n") + "\n", { mode: 0o644 });
}
