/**
 * The YAML parser (the `yaml` package) as one module: what task files, agents.yaml and the
 * configuration file are read with. `npm run build` replaces this file's output with a bundle of
 * the package's own code from node_modules (`npm run bundle:vendor`, esbuild): loaded as its
 * eighty-odd modules, it costs every `start`, `doctor` and `task` command twice the CPU the
 * bundle does. The package's Node build is CommonJS and requires `process`: the bundles begin
 * with a `require` made by createRequire (bundle:vendor's banner). Without that step (tsc alone)
 * this file is a plain re-export and behaves the same.
 */
export { Document, parse, parseDocument, stringify, visit } from "yaml";
