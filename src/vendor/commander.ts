/**
 * The command-line parser (the `commander` package) as one module. `npm run build` replaces this
 * file's output with a bundle of the package's code (`npm run bundle:vendor`, esbuild): the
 * package is CommonJS, which Node loads from an ES module by first scanning its source for the
 * names it exports and then compiling it, a cost every command paid before parsing its first
 * option. Without that step (tsc alone) this file is a plain re-export and behaves the same.
 */
export { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
