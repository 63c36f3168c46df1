/**
 * Python-compatible JSON: canonical serialization (json.dumps with sort_keys and
 * ensure_ascii) and a lossless parser that keeps what Python would see in each
 * number token (int vs float, integers beyond 2^53).
 *
 * Value model:
 *  - integer tokens within the safe range → number; beyond it → bigint;
 *  - float tokens with a fractional value → number;
 *  - float tokens whose value is integral (`3.0`, `1e16`, `-0.0`) → PyFloat, so they
 *    print back as floats.
 * A JS number is printed as an integer when Number.isInteger and as a Python float repr otherwise.
 */

export class PyFloat {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toJSON(): number {
    return this.value;
  }
}

export type JsonValue =
  null | boolean | number | bigint | PyFloat | string | JsonValue[] | { [key: string]: JsonValue };

export interface Separators {
  item: string;
  key: string;
}
/** `separators=(",", ":")`, what WAL hashing uses. */
export const COMPACT: Separators = { item: ",", key: ":" };
/** Python's default separators, what the audit log uses. */
export const PY_DEFAULT: Separators = { item: ", ", key: ": " };

/** Python `repr(float)`. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  // toExponential() with no argument gives the shortest round-trip digits, like Python's repr.
  const [mantissa, expText] = Math.abs(x).toExponential().split("e");
  const exp = Number(expText);
  const digits = mantissa.replace(".", "");
  if (exp >= -4 && exp < 16) {
    let out: string;
    if (exp < 0) {
      out = "0." + "0".repeat(-exp - 1) + digits;
    } else if (digits.length <= exp + 1) {
      out = digits + "0".repeat(exp + 1 - digits.length) + ".0";
    } else {
      out = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
    }
    return sign + out;
  }
  const expSign = exp < 0 ? "-" : "+";
  const expDigits = String(Math.abs(exp)).padStart(2, "0");
  return `${sign}${mantissa}e${expSign}${expDigits}`;
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
  0x08: "\\b",
  0x0c: "\\f",
};

/** A JSON string literal as Python prints it with ensure_ascii=True. */
export function pyStringLiteral(s: string): string {
  let out = '"';
  let plainStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(plainStart, i);
    plainStart = i + 1;
    const short = SHORT_ESCAPES[c];
    out += short ?? "\\u" + c.toString(16).padStart(4, "0");
  }
  return out + s.slice(plainStart) + '"';
}

/** Orders keys by Unicode code point, as Python sorts str (UTF-16 order differs above U+FFFF). */
export function compareCodePoints(a: string, b: string): number {
  const la = a.length;
  const lb = b.length;
  let i = 0;
  let j = 0;
  while (i < la && j < lb) {
    const ca = a.codePointAt(i)!;
    const cb = b.codePointAt(j)!;
    if (ca !== cb) return ca - cb;
    i += ca > 0xffff ? 2 : 1;
    j += cb > 0xffff ? 2 : 1;
  }
  return la - i - (lb - j);
}

function writeValue(value: unknown, sep: Separators, sortKeys: boolean, out: string[]): void {
  if (value === null || value === undefined) {
    out.push("null");
  } else if (typeof value === "boolean") {
    out.push(value ? "true" : "false");
  } else if (typeof value === "number") {
    if (!Number.isInteger(value) || Object.is(value, -0)) out.push(pyFloatRepr(value));
    // String(1e21) is "1e+21"; an integer prints all its digits, like a Python int.
    else out.push(Math.abs(value) < 1e21 ? String(value) : BigInt(value).toString());
  } else if (typeof value === "bigint") {
    out.push(value.toString());
  } else if (value instanceof PyFloat) {
    out.push(pyFloatRepr(value.value));
  } else if (typeof value === "string") {
    out.push(pyStringLiteral(value));
  } else if (Array.isArray(value)) {
    out.push("[");
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(sep.item);
      writeValue(value[i], sep, sortKeys, out);
    }
    out.push("]");
  } else if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    let keys = Object.keys(obj).filter((k) => obj[k] !== undefined);
    if (sortKeys) keys = keys.sort(compareCodePoints);
    out.push("{");
    keys.forEach((k, i) => {
      if (i > 0) out.push(sep.item);
      out.push(pyStringLiteral(k), sep.key);
      writeValue(obj[k], sep, sortKeys, out);
    });
    out.push("}");
  } else {
    throw new TypeError(`cannot serialize ${typeof value} as JSON`);
  }
}

/** `json.dumps(value, sort_keys=True, separators=sep, ensure_ascii=True)`. */
export function canonicalJson(value: unknown, sep: Separators = COMPACT): string {
  const out: string[] = [];
  writeValue(value, sep, true, out);
  return out.join("");
}

/** Like canonicalJson but keeps the object's own key order (WAL lines are written in field order). */
export function orderedJson(value: unknown, sep: Separators = COMPACT): string {
  const out: string[] = [];
  writeValue(value, sep, false, out);
  return out.join("");
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position}`);
    this.name = "JsonSyntaxError";
  }
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Parses JSON text keeping Python's view of every number (see the value model above). */
export function parseJson(text: string): JsonValue {
  let pos = 0;
  const ws = () => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
  };
  const fail = (msg: string): never => {
    throw new JsonSyntaxError(msg, pos);
  };
  const parseString = (): string => {
    // pos at opening quote
    pos++;
    let out = "";
    let start = pos;
    while (true) {
      if (pos >= text.length) fail("unterminated string");
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, pos);
        const e = text[pos + 1];
        switch (e) {
          case '"':
            out += '"';
            break;
          case "\\":
            out += "\\";
            break;
          case "/":
            out += "/";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const hex = text.slice(pos + 2, pos + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            pos += 4;
            break;
          }
          default:
            fail("bad escape");
        }
        pos += 2;
        start = pos;
        continue;
      }
      pos++;
    }
  };
  const parseValue = (depth: number): JsonValue => {
    if (depth > 512) fail("nesting too deep");
    ws();
    const c = text[pos];
    if (c === "{") {
      pos++;
      const obj: Record<string, JsonValue> = {};
      ws();
      if (text[pos] === "}") {
        pos++;
        return obj;
      }
      while (true) {
        ws();
        if (text[pos] !== '"') fail("expected string key");
        const key = parseString();
        ws();
        if (text[pos] !== ":") fail("expected ':'");
        pos++;
        const v = parseValue(depth + 1);
        // Python keeps the last duplicate key; so do we.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "}") {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      pos++;
      const arr: JsonValue[] = [];
      ws();
      if (text[pos] === "]") {
        pos++;
        return arr;
      }
      while (true) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[pos] === ",") {
          pos++;
          continue;
        }
        if (text[pos] === "]") {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith("true", pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith("false", pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith("null", pos)) {
      pos += 4;
      return null;
    }
    if (text.startsWith("NaN", pos)) {
      pos += 3;
      return new PyFloat(NaN);
    }
    if (text.startsWith("Infinity", pos)) {
      pos += 8;
      return new PyFloat(Infinity);
    }
    if (text.startsWith("-Infinity", pos)) {
      pos += 9;
      return new PyFloat(-Infinity);
    }
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (!m) return fail("unexpected character");
    pos += m[0].length;
    const token = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      const big = BigInt(token);
      // Number(big), not Number(token): the integer token "-0" is Python's int 0, not -0.0.
      return big > MAX_SAFE || big < -MAX_SAFE ? big : Number(big);
    }
    const x = Number(token);
    return Number.isInteger(x) || !Number.isFinite(x) ? new PyFloat(x) : x;
  };
  const v = parseValue(0);
  ws();
  if (pos !== text.length) fail("trailing data");
  return v;
}
