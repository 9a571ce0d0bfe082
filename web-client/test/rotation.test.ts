// The failover policy alone: the order of servers and when a delay applies.
import { describe, expect, it } from "vitest";
import { ServerRotation } from "../src/sync/rotation";

const backoff = { initialMs: 500, maxMs: 10_000 };

describe("ServerRotation", () => {
  it("goes round the servers at once, and backs off after each whole round, more each time", () => {
    const rotation = new ServerRotation(["a", "b", "c"], backoff, () => 1);
    const seen: [string, number][] = [];
    for (let i = 0; i < 9; i++) {
      const delay = rotation.failed();
      seen.push([rotation.current, delay]);
    }
    expect(seen).toEqual([
      ["b", 0],
      ["c", 0],
      ["a", 500],
      ["b", 0],
      ["c", 0],
      ["a", 1000],
      ["b", 0],
      ["c", 0],
      ["a", 2000],
    ]);
  });

  it("starts a new round and the backoff over from the server that answered", () => {
    const rotation = new ServerRotation(["a", "b", "c"], backoff, () => 1);
    rotation.failed();
    rotation.failed();
    rotation.failed(); // a whole round: 500 ms
    rotation.failed(); // b
    rotation.reset(); // b answered
    expect(rotation.current).toBe("b");
    expect([rotation.failed(), rotation.current]).toEqual([0, "c"]);
    expect([rotation.failed(), rotation.current]).toEqual([0, "a"]);
    expect([rotation.failed(), rotation.current]).toEqual([500, "b"]);
  });

  it("with one server, backs off after every failure, as a single client does", () => {
    const rotation = new ServerRotation(["a"], backoff, () => 1);
    expect([rotation.failed(), rotation.failed(), rotation.failed()]).toEqual([500, 1000, 2000]);
    expect(rotation.current).toBe("a");
  });

  it("needs a server", () => {
    expect(() => new ServerRotation([], backoff, () => 1)).toThrow(/at least one server URL/);
  });
});
