/**
 * The layering of src/ (docs/ARCHITECTURE.md "Layering"), checked by `npm run lint`:
 *   json, errors, vendor -> workspace -> wal, audit, ledger -> state -> checkpoint -> storage, dr
 *     -> orchestrator -> replication -> config -> cli
 * A folder imports only from its own layer or below, and no two files import each other,
 * directly or through others.
 */
const layers = [
  { name: "base", folders: ["json", "errors", "vendor", "version\\.ts$"] },
  { name: "workspace", folders: ["workspace"] },
  { name: "records", folders: ["wal", "audit", "ledger"] },
  { name: "state", folders: ["state"] },
  { name: "checkpoint", folders: ["checkpoint"] },
  { name: "storage-dr", folders: ["storage", "dr", "archive"] },
  { name: "orchestrator", folders: ["orchestrator"] },
  { name: "replication", folders: ["replication"] },
  { name: "config", folders: ["config"] },
  { name: "cli", folders: ["cli"] },
];

const pathOf = (folders) => `^src/(${folders.join("|")})(/|$)`;

const layerRules = layers.slice(0, -1).map((layer, index) => {
  const above = layers.slice(index + 1).flatMap((higher) => higher.folders);
  return {
    name: `layer-${layer.name}`,
    comment: `${layer.folders.join(", ")} import only from their own layer or below`,
    severity: "error",
    from: { path: pathOf(layer.folders) },
    to: { path: pathOf(above) },
  };
});

export default {
  forbidden: [
    {
      name: "no-circular",
      comment: "no import circle, at file level",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "src-not-from-bench-or-test",
      comment: "the product does not import its benchmarks or tests",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(bench|test)/" },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^dist/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
