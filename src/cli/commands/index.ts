/** Registers every command group; each domain owns one module here. */
import type { Command } from "commander";
import { registerAudit } from "./audit.js";
import { registerDoctor } from "./doctor.js";
import { registerInit } from "./init.js";
import { registerOrchestrator } from "./orchestrator.js";
import { registerTask } from "./task.js";

export function registerCommands(program: Command): void {
  registerInit(program);
  registerAudit(program);
  registerTask(program);
  registerOrchestrator(program);
  registerDoctor(program);
}
