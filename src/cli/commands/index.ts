/** Registers every command group; each domain owns one module here. */
import type { Command } from "commander";
import { registerAudit } from "./audit.js";
import { registerInit } from "./init.js";
import { registerDr } from "./dr.js";

export function registerCommands(program: Command): void {
  registerInit(program);
  registerAudit(program);
  registerDr(program);
}
