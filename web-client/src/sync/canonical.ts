/**
 * JSON values and their canonical text (RFC 8785, the JSON Canonicalization
 * Scheme), the form in which the merge rule compares values (contract §1).
 *
 * RFC 8785 is what JavaScript already does, with three checks added:
 * numbers are written by `Number.prototype.toString` (so `1.0` is `1` and
 * `-0` is `0`), strings by `JSON.stringify` (which escapes only `"`, `\` and
 * controls, in lowercase hex), and object members are sorted by UTF-16 code
 * units — JavaScript's default sort. What `JSON.parse` lets through but the
 * protocol refuses is checked here: numbers that overflow a double
 * (`1e400` parses to `Infinity`), strings or member names holding an unpaired
 * surrogate, and nesting deeper than {@link MAX_DEPTH}.
 */

import { ProtocolError } from "./errors";

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The deepest nesting of arrays and objects a value may have (the server's parser refuses 128). */
export const MAX_DEPTH = 127;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether a string is valid Unicode (no unpaired surrogate). */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/** Parse JSON text to a value; anything the protocol refuses is `bad_message`. */
export function parseJson(text: string): JsonValue {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError("bad_message", `not JSON: ${(error as Error).message}`);
  }
  canonicalize(value as JsonValue); // validates
  return value as JsonValue;
}

/** The canonical JSON text of a value; throws `bad_message` for what JSON cannot hold. */
export function canonicalize(value: JsonValue): string {
  return write(value, 0);
}

/** Canonicalize JSON text: parse it, then write it canonically. */
export function canonicalText(text: string): string {
  return canonicalize(parseJson(text));
}

function write(value: unknown, depth: number): string {
  switch (typeof value) {
    case "string":
      if (!isWellFormed(value)) {
        throw new ProtocolError("bad_message", "a string holds an unpaired surrogate");
      }
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) {
        throw new ProtocolError("bad_message", "a number is not finite (it overflows a double)");
      }
      return String(value); // ECMAScript Number::toString, as RFC 8785 says; -0 → "0"
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (depth >= MAX_DEPTH) {
        throw new ProtocolError("bad_message", `the value is nested deeper than ${MAX_DEPTH} levels`);
      }
      if (Array.isArray(value)) {
        return `[${value.map((item: unknown) => write(item, depth + 1)).join(",")}]`;
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).sort(); // by UTF-16 code units, as RFC 8785 says
      const members = keys.map((key) => {
        if (!isWellFormed(key)) {
          throw new ProtocolError("bad_message", "a member name holds an unpaired surrogate");
        }
        return `${JSON.stringify(key)}:${write(record[key], depth + 1)}`;
      });
      return `{${members.join(",")}}`;
    }
    default:
      throw new ProtocolError("bad_message", `not a JSON value: ${typeof value}`);
  }
}

/** The length of a string in UTF-8 bytes, without encoding it. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * Compare two strings as their UTF-8 bytes would compare (equivalently: by
 * code point). JavaScript's `<` compares UTF-16 code units, which disagrees
 * when a surrogate (U+D800–DFFF, the halves of code points past U+FFFF) meets
 * a unit in U+E000–FFFF: remap both ranges so code-unit order becomes
 * code-point order, at the first unit that differs.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000; // above every BMP unit
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}
