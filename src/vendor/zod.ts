/**
 * The part of zod that we use, as one module: the `zod/mini` functions of our schemas (task
 * files, agents.yaml, the configuration file), with zod's English messages. `npm run build` replaces
 * this file's output with a bundle of that code from node_modules, tree-shaken to these exports
 * (`npm run bundle:vendor`, esbuild). Why: `zod` loaded as its own modules builds its whole API
 * when imported, a tenth of a CPU second or more in every `start`, `doctor` and `task` command;
 * `zod/mini` is the same library built to be shaken down to what its callers name. Without
 * that step (tsc alone) this file is a plain re-export and behaves the same.
 */
import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod/mini leaves error messages to the caller's choice of locale; ours name what was wrong as
// the full zod does ("expected number, received string").
config(en());

export {
  array,
  boolean,
  discriminatedUnion,
  enum,
  int,
  literal,
  looseObject,
  maximum,
  minimum,
  minLength,
  nullable,
  number,
  object,
  optional,
  positive,
  record,
  refine,
  regex,
  strictObject,
  string,
  url,
} from "zod/mini";
export type { core, infer, ZodMiniType } from "zod/mini";
