/**
 * The command-line parser (the `commander` package) as one module. `npm run build` replaces this
 * file's output with a bundle of the package's code (`npm run bundle:vendor`, esbuild): the
 * package is CommonJS, and Node reads a CommonJS module imported from an ES module twice (once
 * to list its exports), which made loading it cost every command more than the rest of its
 * start-up together. Without that step (tsc alone) this file is a plain re-export and behaves
 * the same.
 */
export { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
