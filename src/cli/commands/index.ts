/** Registers every command group; each domain owns one module here. */
import type { Command } from "commander";
import { registerAudit } from "./audit.js";
import { registerInit } from "./init.js";
import { registerReplicate } from "./replicate.js";
import { registerDrReplication } from "./dr-replication.js";

export function registerCommands(program: Command): void {
  registerInit(program);
  registerAudit(program);
  registerReplicate(program);
  // Attaches to the `dr` group: keep it after every other registration.
  registerDrReplication(program);
}
