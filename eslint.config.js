import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "test/fixtures/**", "bench/make-workspace.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/workspace/timer.ts"],
    rules: {
      // Node's timers fire a delay past 2^31-1 ms after 1 ms: a computed delay (possibly a user's)
      // goes through src/workspace/timer.ts. A literal or a CONSTANT delay is known to be short.
      "no-restricted-syntax": [
        "error",
        {
          selector:
            "CallExpression[callee.name=/^(setTimeout|setInterval)$/][arguments.length>1][arguments.1.type!='Literal']:not([arguments.1.name=/^[A-Z][A-Z0-9_]*$/])",
          message:
            "a computed delay goes through setLongTimeout/setLongInterval (src/workspace/timer.ts): Node fires one past 2^31-1 ms at once",
        },
      ],
    },
  },
);
