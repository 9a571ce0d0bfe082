// The Hybrid Logical Clock (contract §2): strictly increasing, observes what it
// receives, carries the counter into the wall field, corrects a fast wall clock.
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../src/sync/errors";
import { Hlc } from "../src/sync/hlc";
import { parseTimestamp } from "../src/sync/timestamp";

const T0 = 1_764_028_800_000;

describe("Hlc", () => {
  it("uses the physical time when it is ahead", () => {
    let now = T0;
    const clock = new Hlc("web-a", () => now);
    expect(clock.now()).toBe("1764028800000-00000-web-a");
    now += 5;
    expect(clock.now()).toBe("1764028800005-00000-web-a");
  });

  it("counts within one millisecond, and when the physical clock goes back", () => {
    let now = T0;
    const clock = new Hlc("web-a", () => now);
    clock.now();
    expect(clock.now()).toBe("1764028800000-00001-web-a");
    now -= 1000;
    expect(clock.now()).toBe("1764028800000-00002-web-a");
  });

  it("advances the wall field instead of passing counter 99999", () => {
    const clock = new Hlc("web-a", () => T0);
    clock.observe("1764028800000-99998-other");
    expect(clock.now()).toBe("1764028800000-99999-web-a");
    expect(clock.now()).toBe("1764028800001-00000-web-a");
  });

  it("orders a new write after every observed timestamp, whatever its node", () => {
    const clock = new Hlc("a", () => T0);
    const seen = "1764028900000-00042-zzz";
    clock.observe(seen);
    const next = clock.now();
    expect(next > seen).toBe(true);
    expect(next).toBe("1764028900000-00043-a");
  });

  it("ignores an observed timestamp that is behind, and invalid text", () => {
    const clock = new Hlc("a", () => T0);
    clock.observe("0000000000001-00000-b");
    clock.observe("not a timestamp");
    expect(clock.now()).toBe("1764028800000-00000-a");
  });

  it("never issues the same timestamp twice, with a clock that jumps around", () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let now = T0;
    const clock = new Hlc("web-a", () => now);
    let last = "";
    for (let i = 0; i < 5000; i++) {
      now += Math.floor(random() * 7) - 3; // forwards and backwards
      if (i % 97 === 0) clock.observe(`${String(now + 50).padStart(13, "0")}-00010-zz`);
      const ts = clock.now();
      expect(ts > last, `${ts} > ${last}`).toBe(true);
      last = ts;
    }
  });

  it("takes the server's time: writes are stamped by the server's clock, fast or slow", () => {
    // Local wall clock 10 minutes behind the server's.
    let now = T0 - 600_000;
    const slow = new Hlc("a", () => now);
    slow.observeServerTime("1764028800000-00000-srv");
    expect(slow.offsetMs).toBe(600_000);
    expect(slow.now()).toBe("1764028800000-00001-a");
    now += 1000;
    expect(parseTimestamp(slow.now()).wall).toBe(T0 + 1000); // moves with time, not stuck on the observed one

    // Local wall clock 10 minutes ahead: new writes stay within the server's max skew.
    now = T0 + 600_000;
    const fast = new Hlc("a", () => now);
    fast.observeServerTime("1764028800000-00000-srv");
    expect(parseTimestamp(fast.now()).wall).toBe(T0);
    now += 1000;
    expect(parseTimestamp(fast.now()).wall).toBe(T0 + 1000);
  });

  it("halves the round trip of a ping when estimating the offset", () => {
    let now = T0;
    const clock = new Hlc("a", () => now);
    const sent = now;
    now += 200; // the pong came back 200 ms later; the server read its clock at about +100
    clock.observeServerTime("1764028800100-00000-srv", sent);
    expect(clock.offsetMs).toBe(0);
  });

  it("refuses to go past the greatest timestamp", () => {
    const clock = new Hlc("a", () => T0);
    clock.observe("9999999999999-99999-b");
    expect(() => clock.now()).toThrow(ProtocolError);
  });

  it("refuses an invalid node id", () => {
    expect(() => new Hlc("no spaces")).toThrow(ProtocolError);
    expect(() => new Hlc("x".repeat(65))).toThrow(ProtocolError);
  });
});
