// What the vectors leave implicit: UTF-8 ordering of strings, UTF-8 lengths, depth.
import { describe, expect, it } from "vitest";
import { MAX_DEPTH, canonicalText, compareUtf8, utf8Length } from "../src/sync/canonical";
import { ProtocolError } from "../src/sync/errors";

describe("compareUtf8", () => {
  const encoder = new TextEncoder();
  function byBytes(a: string, b: string): number {
    const x = encoder.encode(a);
    const y = encoder.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return x.length - y.length;
  }

  it("agrees with comparing TextEncoder bytes", () => {
    const samples = ["", "a", "ab", "b", "é", "e\u0301", "\uffff", "😀", "😀a", "\ue000", "\ud7ff", "中", "\u0000", "z"];
    for (const a of samples) {
      for (const b of samples) {
        expect(Math.sign(compareUtf8(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(Math.sign(byBytes(a, b)));
      }
    }
  });

  it("puts U+1F600 after U+FFFF, unlike UTF-16 order", () => {
    expect("😀" < "\uffff").toBe(true);
    expect(compareUtf8("😀", "\uffff")).toBeGreaterThan(0);
  });
});

describe("utf8Length", () => {
  it("counts like TextEncoder", () => {
    for (const text of ["", "abc", "é", "€", "😀", "a😀é€", "\u0000"]) {
      expect(utf8Length(text)).toBe(new TextEncoder().encode(text).length);
    }
  });
});

describe("nesting", () => {
  it(`accepts ${MAX_DEPTH} levels and refuses one more, as the server does`, () => {
    expect(canonicalText("[".repeat(MAX_DEPTH) + "]".repeat(MAX_DEPTH))).toHaveLength(2 * MAX_DEPTH);
    const deeper = MAX_DEPTH + 1;
    expect(() => canonicalText("[".repeat(deeper) + "]".repeat(deeper))).toThrow(ProtocolError);
  });
});
