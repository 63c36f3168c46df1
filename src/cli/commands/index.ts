/** Registers every command group; each domain owns one module here. */
import type { Command } from "commander";
import { registerAudit } from "./audit.js";
import { registerCheckpoint } from "./checkpoint.js";
import { registerDoctor } from "./doctor.js";
import { registerDr } from "./dr.js";
import { registerDrOffsite } from "./dr-offsite.js";
import { registerInit } from "./init.js";
import { registerOrchestrator } from "./orchestrator.js";
import { registerTask } from "./task.js";
import { registerReplicate } from "./replicate.js";
import { registerDrReplication } from "./dr-replication.js";
import { registerWal } from "./wal.js";

export function registerCommands(program: Command): void {
  registerInit(program);
  registerAudit(program);
  registerWal(program);
  registerCheckpoint(program);
  registerTask(program);
  registerOrchestrator(program);
  registerDoctor(program);
  // The `dr` group itself (backup, restore, verify, drill); the next two attach to it.
  registerDr(program);
  // After the `dr` group: attaches dr list / prune / schedule to it.
  registerDrOffsite(program);
  registerReplicate(program);
  // Attaches to the `dr` group: keep it after every other registration.
  registerDrReplication(program);
}
