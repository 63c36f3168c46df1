/**
 * `bernstein dr schedule | list | prune`: the off-site side of the disaster-recovery group; one
 * module per subcommand in dr/.
 */
import type { Command } from "../../vendor/commander.js";
import { registerList } from "./dr/list.js";
import { drGroup } from "./dr/options.js";
import { registerPrune } from "./dr/prune.js";
import { registerSchedule } from "./dr/schedule.js";

export function registerDrOffsite(program: Command): void {
  const dr = drGroup(program);
  registerSchedule(dr);
  registerList(dr);
  registerPrune(dr);
}
