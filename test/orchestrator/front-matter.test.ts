/**
 * The narrow front-matter reader against the YAML parser on seeded random front matter, built
 * from the forms it takes and from their near misses: whatever it takes, it must read as the
 * parser does; and it must take what `task add` and the Python original write.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import YAML from "yaml";
import { narrowFrontMatter, parseFrontMatter } from "../../src/orchestrator/front-matter.js";
import { renderTask } from "../../src/orchestrator/tasks.js";
import { withSeed } from "../helpers.js";

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const KEYS = ["id", "title", "role", "priority", "depends_on", "max_retries", "scope", "status", "x_1", "_k"];
/** Keys the narrow reader must leave to the parser, or whose reading could go wrong. */
const ODD_KEYS = ["__proto__", "true", "null", "Id", "1a", "a-b", "a b", "", "constructor", "on", "y"];
const WORDS = ["alpha", "T-00248", "src/a.ts", "v1.2", "a_b", "x", "Yes", "no", "on", "off", "e5", "inf"];
/** Values that look like words but are not strings, or not read as written, in YAML 1.2. */
const ODD_VALUES = [
  "true",
  "True",
  "TRUE",
  "false",
  "null",
  "Null",
  "NULL",
  "~",
  "",
  " ",
  "007",
  "0",
  "-1",
  "-0",
  "+1",
  "1.5",
  "1e3",
  ".inf",
  ".nan",
  "0x1F",
  "0o17",
  "12345678901234567890",
  "a: b",
  "a #c",
  "a#c",
  "'q'",
  '"q"',
  "a\tb",
  "a ",
  " a",
  "&anchor a",
  "*alias",
  "!tag a",
  "|",
  ">",
  "@a",
  "`a",
  "%a",
  "a,b",
  "a\r",
  "-",
  "- a",
  "? a",
  "[",
  "]",
  "{}",
  "{a: 1}",
  "[a,b]",
  "[a , b]",
  "[a, ]",
  "[, a]",
  "[ ]",
  "[a, [b]]",
  "[a, 1]",
  "[a, true]",
  "[a, 'b']",
  "[a, b c]",
  "[a: b]",
  "[]",
  "[a, #b]",
  "ünï",
  "a\u00a0b",
];

function value(r: () => number): string {
  const roll = r();
  if (roll < 0.25) return pick(r, ODD_VALUES);
  if (roll < 0.45) return String(Math.floor(r() * 10 ** Math.floor(r() * 16)));
  if (roll < 0.65) {
    const n = Math.floor(r() * 4);
    return `[${Array.from({ length: n }, () => pick(r, r() < 0.85 ? WORDS : ODD_VALUES)).join(", ")}]`;
  }
  const n = 1 + Math.floor(r() * 4);
  return Array.from({ length: n }, () => pick(r, r() < 0.9 ? WORDS : ODD_VALUES)).join(
    r() < 0.9 ? " " : "  ",
  );
}

function line(r: () => number): string {
  const roll = r();
  if (roll < 0.03)
    return pick(r, ["", "# note", "  id: x", "- a", "id:x", "id:  x", "id: x # c", "---", "..."]);
  const key = pick(r, r() < 0.9 ? KEYS : ODD_KEYS);
  if (roll < 0.15) {
    // A block list, as the YAML library writes one, or a near miss of it.
    const items = Array.from({ length: Math.floor(r() * 4) }, () => {
      const indent = r() < 0.9 ? "  - " : pick(r, [" - ", "    - ", "  -", "- ", "\t- ", "  -  "]);
      return (
        indent +
        (r() < 0.8 ? pick(r, WORDS) : r() < 0.5 ? String(Math.floor(r() * 1000)) : pick(r, ODD_VALUES))
      );
    });
    return [`${key}:${r() < 0.9 ? "" : " "}`, ...items].join("\n");
  }
  return `${key}${r() < 0.97 ? ": " : pick(r, [":", " : ", ":\t"])}${value(r)}`;
}

function frontMatter(r: () => number): string {
  const lines = Array.from({ length: Math.floor(r() * 8) }, () => line(r));
  return lines.join(r() < 0.95 ? "\n" : "\r\n") + (r() < 0.9 ? "\n" : "");
}

function parsed(yaml: string): { value?: unknown; error?: string } {
  try {
    return { value: YAML.parse(yaml) };
  } catch (err) {
    return { error: (err as Error).name };
  }
}

test("whatever the narrow reader takes, it reads as the YAML parser does", async () => {
  await withSeed("FRONT_MATTER_SEED", async (r) => {
    let taken = 0;
    let left = 0;
    for (let i = 0; i < 20_000; i++) {
      const yaml = frontMatter(r);
      const narrow = narrowFrontMatter(yaml);
      if (narrow === undefined) {
        left++;
        continue;
      }
      taken++;
      const general = parsed(yaml);
      assert.equal(
        general.error,
        undefined,
        `taken by the narrow reader, refused by the parser: ${JSON.stringify(yaml)}`,
      );
      assert.deepStrictEqual(narrow, general.value, `read differently: ${JSON.stringify(yaml)}`);
      assert.equal(Object.getPrototypeOf(narrow), Object.prototype);
    }
    // Both sides of the line are exercised, or the comparison proves nothing.
    assert.ok(taken > 2000 && left > 2000, `taken ${taken}, left to the parser ${left}`);
  });
});

test("the front matter that task add and the Python original write is taken; the rest is parsed", () => {
  const spec = {
    id: "T-7",
    title: "fix the flaky merge test",
    role: "backend",
    priority: 2,
    depends_on: ["T-5", "T-6"],
    command: "npm test",
    prompt: null,
    agent: null,
    max_retries: 1,
    timeout_s: 600,
    body: "",
  };
  const written = renderTask(spec).split("---\n")[1]!;
  assert.deepStrictEqual(narrowFrontMatter(written), YAML.parse(written));
  // As the Python original and the bench workspace write a task.
  const python =
    "id: T-00249\ntitle: verify task claim route\nrole: backend\npriority: 3\nscope: large\nstatus: done\ndepends_on: [T-00248]\n";
  assert.deepStrictEqual(narrowFrontMatter(python), YAML.parse(python));
  // Quoted, commented or block-styled YAML goes to the parser, which reads it as ever.
  const block = "id: 'T-8'\ntitle: \"a: b\" # why\ndepends_on:\n  - T-7\n";
  assert.equal(narrowFrontMatter(block), undefined);
  assert.deepStrictEqual(parseFrontMatter(block), { id: "T-8", title: "a: b", depends_on: ["T-7"] });
  assert.throws(() => parseFrontMatter("id: a\nid: b\n"), /unique/i);
});
