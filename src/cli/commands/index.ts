/**
 * Registers the command groups; each domain owns one module here. Only the group that argv
 * names is loaded (all of them for help or an unknown word): a `dr restore` need not carry the
 * orchestrator's task validation or the replication server in its memory.
 */
import type { Command } from "../../vendor/commander.js";

type Register = (program: Command) => Promise<void>;

const init: Register = async (p) => (await import("./init.js")).registerInit(p);
const audit: Register = async (p) => (await import("./audit.js")).registerAudit(p);
const wal: Register = async (p) => (await import("./wal.js")).registerWal(p);
const checkpoint: Register = async (p) => (await import("./checkpoint.js")).registerCheckpoint(p);
const task: Register = async (p) => (await import("./task.js")).registerTask(p);
const orchestrator: Register = async (p) => (await import("./orchestrator.js")).registerOrchestrator(p);
const stopStatus: Register = async (p) => (await import("./status.js")).registerStopAndStatus(p);
const doctor: Register = async (p) => (await import("./doctor.js")).registerDoctor(p);
const replicate: Register = async (p) => (await import("./replicate.js")).registerReplicate(p);
const config: Register = async (p) => (await import("./config.js")).registerConfig(p);
const completion: Register = async (p) => (await import("./completion.js")).registerCompletion(p);
const key: Register = async (p) => (await import("./key.js")).registerKey(p);
// The `dr` group itself (backup, restore, verify, drill, rekey), then what attaches to it: list / prune
// / schedule, and (last) status / promote / runbook.
const drCore: Register = async (p) => (await import("./dr.js")).registerDr(p);
const drOffsite: Register = async (p) => (await import("./dr-offsite.js")).registerDrOffsite(p);
const drReplication: Register = async (p) => (await import("./dr-replication.js")).registerDrReplication(p);
const drArchive: Register = async (p) => (await import("./dr-archive.js")).registerDrArchive(p);
const drArchiveRead: Register = async (p) => (await import("./dr-archive-read.js")).registerDrArchiveRead(p);
const drArchiveCompact: Register = async (p) =>
  (await import("./dr-archive-compact.js")).registerDrArchiveCompact(p);
// `dr backup` and `dr restore` register only themselves: the other subcommands' modules (the
// verify, drill and rekey sides) would cost each run their start-up.
const drSub =
  (load: () => Promise<(dr: Command) => void>): Register =>
  async (p) => {
    const { drGroup } = await import("./dr/options.js");
    (await load())(drGroup(p));
  };
const drBackup = drSub(async () => (await import("./dr/backup.js")).registerBackup);
const drRestore = drSub(async () => (await import("./dr/restore.js")).registerRestore);
const dr: Register[] = [drCore, drOffsite, drReplication, drArchive, drArchiveRead, drArchiveCompact];
const DR_BY_WORD: Record<string, Register[]> = {
  backup: [drBackup],
  restore: [drRestore],
  verify: [drCore],
  drill: [drCore],
  list: [drOffsite],
  prune: [drOffsite],
  schedule: [drOffsite],
  status: [drReplication],
  promote: [drReplication],
  runbook: [drReplication],
  rekey: [drCore],
  archive: [drCore, drArchive],
  "archive-list": [drCore, drArchiveRead],
  "archive-restore": [drCore, drArchiveRead],
  "archive-compact": [drCore, drArchiveCompact],
};

const ALL: Register[] = [
  init,
  audit,
  wal,
  checkpoint,
  task,
  orchestrator,
  stopStatus,
  doctor,
  ...dr,
  replicate,
  config,
  key,
  completion,
];
const BY_WORD: Record<string, Register[]> = {
  init: [init],
  audit: [audit],
  wal: [wal],
  checkpoint: [checkpoint],
  task: [task],
  start: [orchestrator],
  stop: [stopStatus],
  status: [stopStatus],
  doctor: [doctor],
  dr,
  replicate: [replicate],
  config: [config],
  key: [key],
  // Generated from the whole command tree.
  completion: ALL,
  man: ALL,
};

/** Where argv's first command word is (not an option, not a global option's value); -1: none. */
export function firstCommandIndex(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--sdd" || argv[i] === "--config") i++;
    else if (!argv[i]!.startsWith("-")) return i;
  }
  return -1;
}

/** The command words of argv: the group and, right after it, the sub-command. */
function commandWords(argv: string[]): string[] {
  const i = firstCommandIndex(argv);
  if (i < 0) return [];
  const next = argv[i + 1];
  return next !== undefined && !next.startsWith("-") ? [argv[i]!, next] : [argv[i]!];
}

const lookup = (table: Record<string, Register[]>, word: string | undefined): Register[] | undefined =>
  word !== undefined && Object.hasOwn(table, word) ? table[word] : undefined;

export async function registerCommands(program: Command, argv: string[] = []): Promise<void> {
  const [word, sub] = commandWords(argv);
  // Without a command word, `--version` prints one line (before any help): it needs none of the
  // command tree, whose modules cost most of the start-up.
  if (word === undefined && (argv.includes("--version") || argv.includes("-V"))) return;
  let wanted = lookup(BY_WORD, word) ?? ALL;
  if (word === "dr") wanted = lookup(DR_BY_WORD, sub) ?? dr;
  for (const register of wanted) await register(program);
}
