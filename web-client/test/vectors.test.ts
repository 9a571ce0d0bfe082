// The conformance vectors of tests/vectors/ (read by cargo test and pytest too):
// timestamps, canonical JSON (RFC 8785), the merge rule, wire entries, ops frames.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { canonicalText } from "../src/sync/canonical";
import { type WireEntry, parseEntry, readEntry } from "../src/sync/entry";
import { ProtocolError } from "../src/sync/errors";
import { applyOpsFrame } from "../src/sync/frames";
import { LwwMap } from "../src/sync/merge";
import { compareTimestamps, formatTimestamp, parseTimestamp } from "../src/sync/timestamp";

const VECTORS = fileURLToPath(new URL("../../tests/vectors/", import.meta.url));

function load<T>(name: string): T {
  return JSON.parse(readFileSync(`${VECTORS}${name}`, "utf8")) as T;
}

type Repeat = Record<string, { placeholder: string; text: string; count: number }>;

/** A case's string field with its `repeat` placeholder expanded (README: `repeat`). */
function field(item: { repeat?: Repeat } & Record<string, unknown>, name: string): string {
  const value = item[name] as string;
  const repeat = item.repeat?.[name];
  return repeat === undefined ? value : value.split(repeat.placeholder).join(repeat.text.repeat(repeat.count));
}

/** Run `fn`, expecting a ProtocolError; return it. */
function refusal(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProtocolError) return error;
    throw new Error(`expected a ProtocolError, got ${String(error)}`, { cause: error });
  }
  throw new Error("expected a ProtocolError, but it was accepted");
}

describe("timestamps.json", () => {
  const vectors = load<{
    ordered: string[];
    valid: { ts: string; wall: number; counter: number; node: string }[];
    invalid: { ts: string; why: string }[];
  }>("timestamps.json");

  it("orders the ordered list as strings and as parsed fields, and formats each back", () => {
    const { ordered } = vectors;
    for (let i = 0; i < ordered.length; i++) {
      const a = ordered[i]!;
      expect(formatTimestamp(parseTimestamp(a)), a).toBe(a);
      for (let j = i + 1; j < ordered.length; j++) {
        const b = ordered[j]!;
        expect(a < b, `${a} < ${b} as strings`).toBe(true);
        expect(compareTimestamps(parseTimestamp(a), parseTimestamp(b)), `${a} < ${b} parsed`).toBeLessThan(0);
        expect(compareTimestamps(parseTimestamp(b), parseTimestamp(a))).toBeGreaterThan(0);
      }
    }
  });

  it.each(vectors.valid)("parses $ts", ({ ts, wall, counter, node }) => {
    expect(parseTimestamp(ts)).toEqual({ wall, counter, node });
    expect(formatTimestamp({ wall, counter, node })).toBe(ts);
  });

  it.each(vectors.invalid)("refuses $why", ({ ts }) => {
    expect(refusal(() => parseTimestamp(ts)).code).toBe("bad_message");
  });
});

describe("canonical.json", () => {
  const vectors = load<{
    cases: { name: string; json: string; canonical: string }[];
    invalid: { name: string; json: string; code: string }[];
  }>("canonical.json");

  it.each(vectors.cases)("$name", ({ json, canonical }) => {
    expect(canonicalText(json)).toBe(canonical);
    expect(canonicalText(canonical)).toBe(canonical);
  });

  it.each(vectors.invalid)("refuses $name", ({ json, code }) => {
    expect(refusal(() => canonicalText(json)).code).toBe(code);
  });
});

describe("merge.json", () => {
  const vectors = load<{
    cases: { name: string; entries: WireEntry[]; expected: Record<string, WireEntry> }[];
  }>("merge.json");

  function permutations<T>(items: T[]): T[][] {
    if (items.length <= 1) return [items];
    return items.flatMap((item, i) =>
      permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
    );
  }

  function check(order: WireEntry[], expected: Record<string, WireEntry>, label: string): void {
    const map = new LwwMap();
    const entries = order.map((raw) => readEntry(raw));
    for (const entry of entries) map.merge(entry);
    const expectedKeys = Object.keys(expected).sort();
    expect([...map.keys()].sort(), label).toEqual(expectedKeys);
    for (const key of expectedKeys) {
      const want = readEntry(expected[key]);
      const got = map.get(key)!;
      expect(got.ts, `${label}: ${key} ts`).toBe(want.ts);
      expect(got.deleted, `${label}: ${key} deleted`).toBe(want.deleted);
      expect(got.canonical, `${label}: ${key} value`).toBe(want.canonical);
    }
    // Merging everything again changes nothing.
    for (const entry of entries) expect(map.merge(entry), `${label}: idempotent`).toBe(false);
  }

  it.each(vectors.cases)("$name", ({ entries, expected }) => {
    check(entries, expected, "in order");
    check([...entries].reverse(), expected, "reversed");
    if (entries.length <= 6) {
      for (const order of permutations(entries)) check(order, expected, "a permutation");
    }
  });
});

describe("entries.json", () => {
  const vectors = load<{
    valid: ({ name: string; entry: string; value_canonical: string | null; repeat?: Repeat } & Record<string, unknown>)[];
    invalid: ({ name: string; entry: string; code: string; repeat?: Repeat } & Record<string, unknown>)[];
  }>("entries.json");

  it.each(vectors.valid)("accepts $name", (item) => {
    const entry = parseEntry(field(item, "entry"));
    const want = item.value_canonical === null ? null : field(item, "value_canonical");
    expect(entry.canonical).toBe(want);
    expect(entry.deleted).toBe(want === null);
  });

  it.each(vectors.invalid)("refuses $name", (item) => {
    expect(refusal(() => parseEntry(field(item, "entry"))).code).toBe(item.code);
  });
});

describe("frames.json", () => {
  type Case = { name: string; frame: string; id: number | null; now_ms?: number; repeat?: Repeat } & Record<string, unknown>;
  const vectors = load<{
    valid: (Case & { applied: number; ignored: number })[];
    invalid: (Case & { code: string; entry: number | null })[];
  }>("frames.json");

  it.each(vectors.valid)("accepts $name", (item) => {
    const map = new LwwMap();
    const result = applyOpsFrame(map, field(item, "frame"), undefined, item.now_ms);
    expect(result).toEqual({ id: item.id, applied: item.applied, ignored: item.ignored });
  });

  it.each(vectors.invalid)("refuses $name", (item) => {
    const map = new LwwMap();
    const error = refusal(() => applyOpsFrame(map, field(item, "frame"), undefined, item.now_ms));
    expect({ code: error.code, id: error.id, entry: error.entry }).toEqual({
      code: item.code,
      id: item.id,
      entry: item.entry,
    });
    expect(map.size, "nothing applied").toBe(0);
  });
});
