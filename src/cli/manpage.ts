/**
 * The man page, bernstein(1), generated in roff (man macros) from the command tree, so it
 * lists exactly the commands and options `--help` does.
 */
import { allCommandSpecs, type CommandSpec, type OptionSpec } from "./command-tree.js";

/** Text safe in roff: backslashes escaped, a leading . or ' neutralised, hyphens of flags kept literal. */
function roff(text: string): string {
  return text
    .replace(/\\/g, "\\e")
    .replace(/-/g, "\\-")
    .split("\n")
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join("\n");
}

function optionItem(o: OptionSpec): string {
  const names = [o.short, o.long]
    .filter(Boolean)
    .map((n) => `\\fB${roff(n!)}\\fR`)
    .join(", ");
  const value = o.value ? ` \\fI${roff(o.value)}\\fR` : "";
  const choices = o.choices ? ` (one of: ${roff(o.choices.join(", "))})` : "";
  return `.TP\n${names}${value}\n${roff(o.description)}${choices}`;
}

function synopsis(cmd: CommandSpec, prog: string): string {
  const args = cmd.arguments.map((a) => (a.required ? `<${a.name}>` : `[${a.name}]`));
  const hasOptions = cmd.options.some((o) => o.long !== "--help");
  return [prog, ...cmd.path, ...(hasOptions ? ["[options]"] : []), ...args].join(" ");
}

/** Exit codes as the README's table states them. */
const EXIT_STATUS: [number, string][] = [
  [0, "success"],
  [1, "a check ran and found a problem (verification failed)"],
  [
    2,
    "usage or input error (bad flags, no workspace, unknown run, missing file, bad configuration file, no AWS credentials for an s3:// location)",
  ],
  [3, "the workspace is locked by a live process"],
  [4, "wrong password, or encrypted data failed authentication"],
  [5, "an archive or state file is corrupt, truncated, hostile or does not match its manifest"],
  [6, "the destination cannot be written (missing or read-only folder, disk full)"],
  [7, "remote storage failed after all retries (the local copy is kept and named)"],
  [8, "replication: acknowledgement policy not met, or fenced by a newer epoch"],
  [9, "an integrity break found while operating (e.g. a broken WAL chain at start)"],
  [70, "internal error (a bug: please report it with the printed stack)"],
];

const ENVIRONMENT: [string, string][] = [
  ["BERNSTEIN_SDD", "the workspace state folder when --sdd is not given"],
  ["BERNSTEIN_DR_PASSWORD", "the backup password when neither a flag nor the configuration file names one"],
  [
    "BERNSTEIN_S3_ENDPOINT",
    "an S3-compatible endpoint when neither --endpoint nor the configuration file sets one",
  ],
  [
    "AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE",
    "S3 region and credentials (the AWS SDK's chain)",
  ],
  ["BERNSTEIN_REPLICATION_TOKEN", "the replication bearer token when no --token-file is given"],
];

export function manPage(root: CommandSpec, prog: string, version: string): string {
  const out: string[] = [
    `.TH ${prog.toUpperCase()} 1 "" "${prog} ${version}" "User Commands"`,
    ".SH NAME",
    `${prog} \\- ${roff(root.description)}`,
    ".SH SYNOPSIS",
    `.B ${prog}`,
    "[\\fIglobal options\\fR] \\fIcommand\\fR [\\fIoptions\\fR]",
    ".SH DESCRIPTION",
    roff(root.description) + ".",
    "Every command has \\fB\\-\\-json\\fR (one JSON document on standard output) and a human output;",
    "an error a user can cause is one line on standard error and a distinct exit status.",
    ".SH GLOBAL OPTIONS",
    ...root.options.map(optionItem),
    ".SH COMMANDS",
  ];
  for (const cmd of allCommandSpecs(root).slice(1)) {
    out.push(`.SS ${roff(synopsis(cmd, prog))}`, roff(cmd.description));
    // Every command has --help; the page says so once, under the global options.
    const options = cmd.options.filter((o) => o.long !== "--help");
    if (options.length) out.push(".RS", ...options.map(optionItem), ".RE");
  }
  out.push(
    ".SH CONFIGURATION FILE",
    `\\fBbernstein.yaml\\fR beside the \\fI.sdd\\fR folder, or the file \\fB\\-\\-config\\fR names:`,
    "default backup destination, encryption and password source, retention, schedule, S3 and replication settings.",
    "Flags override it; the environment never does.",
    `\\fB${prog} config show\\fR prints the effective values and where each came from.`,
    ".SH ENVIRONMENT",
    ...ENVIRONMENT.flatMap(([name, text]) => [".TP", `.B ${roff(name)}`, roff(text)]),
    ".SH EXIT STATUS",
    ...EXIT_STATUS.flatMap(([code, text]) => [".TP", `.B ${code}`, roff(text)]),
    ".SH SEE ALSO",
    "The documentation in the \\fIdocs/\\fR folder of the source: ARCHITECTURE.md, dr.md, offsite.md, replication.md, config.md.",
    "",
  );
  return out.join("\n");
}
