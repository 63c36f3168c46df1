/**
 * A task file's front matter read as YAML. The YAML parser is most of the cost of scanning a large
 * backlog (doctor, start's recovery, `task list`). The front matter that `task add` and the Python
 * original write is a handful of `key: value` lines whose values are words, whole numbers and
 * lists of words (`[a, b]`, or `key:` and `  - a` lines), so a narrow reader takes those lines
 * and gives what the YAML parser gives (YAML 1.2 core schema). Anything outside that form, however
 * harmless, goes to the parser: the narrow reader never has to be right about the rest of YAML.
 */
import * as YAML from "../vendor/yaml.js";

const LINE = /^([a-z_][a-z0-9_]*):(?: (.+))?$/;
/** An item of a block list, indented as the YAML library writes it. */
const ITEM = /^ {2}- (.+)$/;
/** A whole number as the core schema reads it to the same digits (no sign, no leading zero). */
const WHOLE = /^(?:0|[1-9][0-9]{0,14})$/;
/** A plain scalar the core schema reads as that string: no indicator, no number, kept as written. */
const WORDS = /^[A-Za-z_][A-Za-z0-9_ ./-]*$/;
const FLOW_ITEM = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
/** Plain words the core schema reads as something other than a string. */
const NOT_STRINGS = new Set(["true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL"]);

const isWords = (v: string, form: RegExp): boolean => form.test(v) && !v.endsWith(" ") && !NOT_STRINGS.has(v);

function scalarOf(v: string): string | number | string[] | undefined {
  if (WHOLE.test(v)) return Number(v);
  if (v === "[]") return [];
  if (v.startsWith("[") && v.endsWith("]")) {
    const items = v.slice(1, -1).split(", ");
    return items.every((i) => isWords(i, FLOW_ITEM)) ? items : undefined;
  }
  return isWords(v, WORDS) ? v : undefined;
}

/** The mapping when every line is in the narrow form; undefined sends the text to the YAML parser. */
export function narrowFrontMatter(yaml: string): Record<string, unknown> | undefined {
  const doc: Record<string, unknown> = {};
  const lines = yaml.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0) return undefined;
  for (let i = 0; i < lines.length; i++) {
    const m = LINE.exec(lines[i]!);
    if (!m) return undefined;
    const key = m[1]!;
    if (key === "__proto__" || NOT_STRINGS.has(key) || Object.hasOwn(doc, key)) return undefined;
    let value: string | number | (string | number)[] | undefined;
    if (m[2] !== undefined) value = scalarOf(m[2]);
    else {
      const items: (string | number)[] = [];
      for (let item; i + 1 < lines.length && (item = ITEM.exec(lines[i + 1]!)); i++) {
        const v = WHOLE.test(item[1]!) ? Number(item[1]) : item[1]!;
        if (typeof v === "string" && !isWords(v, WORDS)) return undefined;
        items.push(v);
      }
      // `key:` alone is null to YAML: rare enough to leave to the parser.
      if (items.length > 0) value = items;
    }
    if (value === undefined) return undefined;
    doc[key] = value;
  }
  return doc;
}

/** The front matter's YAML as the YAML parser reads it; throws what the parser throws. */
export function parseFrontMatter(yaml: string): unknown {
  return narrowFrontMatter(yaml) ?? YAML.parse(yaml);
}
