// The sans-I/O replica: handshake (delta and snapshot), pending writes and their
// resending, acks, broadcasts, presence, errors, clock observation — by script.
import { describe, expect, it } from "vitest";
import type { WireEntry } from "../src/sync/entry";
import { ProtocolError } from "../src/sync/errors";
import { type Change, Replica, type ReplicaEvent } from "../src/sync/replica";

const T0 = 1_764_028_800_000;

type Frame = Record<string, unknown>;

/** A replica with a frozen clock, recording its events. */
function replica(options: Partial<ConstructorParameters<typeof Replica>[0]> = {}) {
  let now = T0;
  const events: ReplicaEvent[] = [];
  const r = new Replica({ doc: "d", node: "web-a", clock: () => now, ...options });
  r.on((event) => events.push(event));
  return {
    r,
    events,
    tick(ms: number) {
      now += ms;
    },
    /** Frames sent since the last call, parsed. */
    sent(): Frame[] {
      return r.takeOutgoing().map((text) => JSON.parse(text) as Frame);
    },
    /** Feed frames from the server. */
    recv(...frames: Frame[]) {
      for (const frame of frames) r.receive(JSON.stringify(frame));
    },
    changes(): Change[] {
      return events.flatMap((event) => (event.type === "changes" ? [...event.changes] : []));
    },
    values(): Record<string, unknown> {
      return Object.fromEntries([...r.entries()].map((entry) => [entry.key, entry.value]));
    },
  };
}

function welcome(fields: Frame = {}): Frame {
  return {
    type: "welcome",
    v: 1,
    doc: "d",
    node: "srv",
    epoch: "e1",
    seq: 0,
    time: "1764028800000-00000-srv",
    full: true,
    readonly: false,
    peers: [],
    ...fields,
  };
}

const live = (key: string, ts: string, value: unknown): WireEntry => ({ key, ts, value }) as WireEntry;
const gone = (key: string, ts: string): WireEntry => ({ key, ts, deleted: true });

/** Connect and complete a handshake. */
function handshake(t: ReturnType<typeof replica>, fields: Frame = {}, entries: WireEntry[] = []): Frame[] {
  t.r.connect();
  const hello = t.sent();
  const seq = (fields.seq as number | undefined) ?? 0;
  t.recv(welcome(fields));
  if (entries.length > 0) t.recv({ type: "entries", entries });
  t.recv({ type: "synced", seq });
  return hello;
}

describe("handshake", () => {
  it("says hello with doc, node and version, without since the first time", () => {
    const t = replica({ token: "s3cret" });
    t.r.connect();
    expect(t.sent()).toEqual([{ type: "hello", v: 1, doc: "d", node: "web-a", token: "s3cret" }]);
    expect(t.r.phase).toBe("hello");
  });

  it("takes a snapshot, goes live and resumes from its seq next time", () => {
    const t = replica();
    handshake(t, { seq: 7 }, [live("a", "1764028700000-00000-x", 1), gone("b", "1764028700001-00000-x")]);
    expect(t.r.phase).toBe("live");
    expect(t.values()).toEqual({ a: 1 });
    expect(t.r.since).toEqual({ epoch: "e1", seq: 7 });
    t.r.disconnect();
    t.r.connect();
    expect(t.sent()[0]).toMatchObject({ type: "hello", since: { epoch: "e1", seq: 7 } });
  });

  it("merges a delta into what it has", () => {
    const t = replica({
      state: { since: { epoch: "e1", seq: 3 }, entries: [live("a", "1764028700000-00000-x", 1), live("b", "1764028700000-00000-x", 2)] },
    });
    handshake(t, { seq: 5, full: false }, [live("b", "1764028700005-00000-y", 3), gone("a", "1764028700006-00000-y")]);
    expect(t.values()).toEqual({ b: 3 });
    expect(t.r.since).toEqual({ epoch: "e1", seq: 5 });
    expect(t.changes().map((c) => [c.key, c.source])).toEqual([
      ["b", "sync"],
      ["a", "sync"],
    ]);
  });

  it("drops, on a snapshot, every key it lacks except keys with unacknowledged writes", () => {
    const t = replica({
      state: {
        since: { epoch: "old", seq: 40 },
        entries: [live("kept", "1764028700000-00000-x", "old"), live("lost", "1764028700000-00000-x", 1), live("mine", "1764028700000-00000-x", 1)],
      },
      pending: [live("mine", "1764028750000-00000-web-a", "offline edit")],
    });
    handshake(t, { seq: 2, epoch: "e2" }, [live("kept", "1764028600000-00000-x", "server's")]);
    // The snapshot replaces the state (a new lineage), with the pending write merged on top.
    expect(t.values()).toEqual({ kept: "server's", mine: "offline edit" });
    const dropped = t.changes().filter((c) => c.entry === undefined).map((c) => c.key);
    expect(dropped).toEqual(["lost"]);
    expect(t.r.since).toEqual({ epoch: "e2", seq: 2 });
  });

  it("resends pending writes after synced, with their original timestamps", () => {
    const t = replica({ pending: [live("k", "1764028750000-00003-web-a", "v"), gone("g", "1764028750001-00000-web-a")] });
    t.r.connect();
    t.sent();
    t.recv(welcome({ seq: 0 }));
    expect(t.sent()).toEqual([]); // nothing before synced
    t.recv({ type: "synced", seq: 0 });
    const [ops] = t.sent();
    expect(ops).toMatchObject({ type: "ops", ops: [live("k", "1764028750000-00003-web-a", "v"), gone("g", "1764028750001-00000-web-a")] });
  });

  it("treats a refused hello as fatal", () => {
    const t = replica();
    t.r.connect();
    t.recv({ type: "error", code: "unauthorized", message: "a valid token is required" });
    expect(t.events).toContainEqual({ type: "error", code: "unauthorized", message: "a valid token is required", fatal: true });
  });

  it("observes the welcome's time, so its writes order after the server's clock", () => {
    const t = replica({ clock: () => T0 - 3_600_000 }); // an hour slow
    handshake(t, { time: "1764028800000-00005-srv" });
    const entry = t.r.set("k", 1);
    expect(entry.ts > "1764028800000-00005-srv").toBe(true);
  });
});

describe("writing", () => {
  it("applies a write at once, sends it when live, and forgets it when acknowledged", () => {
    const t = replica();
    handshake(t);
    const entry = t.r.set("k", { a: [1, 2] });
    expect(t.values()).toEqual({ k: { a: [1, 2] } });
    expect(t.r.pendingCount).toBe(1);
    const [ops] = t.sent();
    expect(ops).toEqual({ type: "ops", id: expect.any(Number) as number, ops: [{ key: "k", ts: entry.ts, value: { a: [1, 2] } }] });
    t.recv({ type: "ack", id: ops!.id, seq: 1, applied: 1, ignored: 0 });
    expect(t.r.pendingCount).toBe(0);
    expect(t.r.since).toEqual({ epoch: "e1", seq: 1 });
  });

  it("keeps writes made offline and sends them after the next handshake", () => {
    const t = replica();
    t.r.set("a", 1);
    t.r.remove("b");
    expect(t.sent()).toEqual([]);
    expect(t.r.pendingCount).toBe(2);
    handshake(t);
    const [ops] = t.sent();
    expect((ops!.ops as WireEntry[]).map((e) => e.key)).toEqual(["a", "b"]);
  });

  it("sends unacknowledged writes again after a reconnect", () => {
    const t = replica();
    handshake(t);
    const entry = t.r.set("k", "v");
    t.sent();
    t.r.disconnect(); // no ack came
    handshake(t, { full: false });
    const [again] = t.sent();
    expect(again).toMatchObject({ type: "ops", ops: [{ key: "k", ts: entry.ts, value: "v" }] });
  });

  it("keeps only a key's latest unacknowledged write, and an old ack does not clear a newer one", () => {
    const t = replica();
    handshake(t);
    t.r.set("k", 1);
    const [first] = t.sent();
    const second = t.r.set("k", 2);
    t.sent();
    expect(t.r.pendingCount).toBe(1);
    t.recv({ type: "ack", id: first!.id, seq: 1, applied: 1, ignored: 0 });
    expect(t.r.pendingCount).toBe(1);
    expect(t.r.pendingEntries()).toEqual([{ key: "k", ts: second.ts, value: 2 }]);
  });

  it("splits many pending writes into messages of at most max_ops entries", () => {
    const t = replica({ limits: { maxKeyBytes: 1024, maxValueBytes: 65_536, maxOps: 3, maxSkewMs: 60_000 } });
    for (let i = 0; i < 7; i++) t.r.set(`k${i}`, i);
    handshake(t);
    expect(t.sent().map((f) => (f.ops as unknown[]).length)).toEqual([3, 3, 1]);
  });

  it("validates keys and values before writing", () => {
    const t = replica();
    expect(() => t.r.set("", 1)).toThrow(ProtocolError);
    expect(() => t.r.set("k".repeat(1025), 1)).toThrow(/too large|over the limit/);
    expect(() => t.r.set("k", "x".repeat(70_000))).toThrow(/over the limit/);
    expect(() => t.r.set("k", Number.POSITIVE_INFINITY)).toThrow(ProtocolError);
    expect(() => t.r.set("k", "\ud800")).toThrow(ProtocolError);
    expect(t.r.pendingCount).toBe(0);
  });

  it("refuses to write on a read-only connection", () => {
    const t = replica();
    handshake(t, { readonly: true });
    expect(t.r.readonly).toBe(true);
    expect(() => t.r.set("k", 1)).toThrow(/read-only/);
  });

  it("keeps writes the server refused for now, and sends them again after the pause", () => {
    const t = replica();
    handshake(t);
    const entry = t.r.set("k", 1);
    const [ops] = t.sent();
    t.recv({ type: "error", code: "clock_skew", message: "ahead", id: ops!.id });
    expect(t.events).toContainEqual({
      type: "rejected",
      code: "clock_skew",
      message: "ahead",
      id: ops!.id,
      writes: [{ key: "k", ts: entry.ts }],
      retryAfterMs: 1000,
    });
    expect(t.r.pendingCount).toBe(1);
    expect(t.sent()).toEqual([]); // paused
    t.tick(1000);
    expect(t.sent()[0]).toMatchObject({ type: "ops", ops: [{ key: "k", value: 1 }] });
  });

  it("rolls back a write the server will never take to the server's entry, and says so", () => {
    const t = replica();
    handshake(t, { seq: 4 }, [live("k", "1764028700000-00000-srv", "server's")]);
    const entry = t.r.set("k", "x".repeat(100));
    const [ops] = t.sent();
    t.recv({ type: "error", code: "too_large", message: "too big", id: ops!.id, entry: 0 });
    expect(t.r.pendingCount).toBe(0);
    expect(t.values()).toEqual({ k: "server's" });
    expect(t.r.since).toEqual({ epoch: "e1", seq: 4 });
    expect(t.events.filter((e) => e.type === "rejected")).toEqual([
      { type: "rejected", code: "too_large", message: "too big", id: ops!.id, writes: [{ key: "k", ts: entry.ts }], retryAfterMs: null },
    ]);
    expect(t.changes().at(-1)).toMatchObject({ key: "k", source: "rollback", entry: { value: "server's" } });
  });

  it("drops only the entry an error names, and sends the others again", () => {
    const t = replica({ pending: [live("a", "1764028750000-00000-web-a", 1), live("b", "1764028750001-00000-web-a", 2)] });
    handshake(t);
    const [ops] = t.sent();
    t.recv({ type: "error", code: "too_large", message: "ops[1]: too big", id: ops!.id, entry: 1 });
    expect(t.r.pendingEntries().map((e) => e.key)).toEqual(["a"]);
    expect(t.values()).toEqual({ a: 1 }); // b was new: rolled back, it is gone
    expect(t.sent()[0]).toMatchObject({ type: "ops", ops: [{ key: "a" }] });
  });

  it("halves its messages when the server takes fewer entries than assumed", () => {
    const t = replica();
    for (let i = 0; i < 8; i++) t.r.set(`k${i}`, i);
    handshake(t);
    const [ops] = t.sent();
    expect((ops!.ops as unknown[]).length).toBe(8);
    t.recv({ type: "error", code: "too_large", message: "8 entries, over the limit of 5", id: ops!.id });
    expect(t.r.pendingCount).toBe(8);
    expect(t.sent().map((f) => (f.ops as unknown[]).length)).toEqual([4, 4]);
  });

  it("settles a write whose ack was lost when the handshake shows the server has it", () => {
    const t = replica();
    handshake(t, { seq: 1 });
    const entry = t.r.set("k", "v");
    t.sent();
    t.r.disconnect(); // the ack was lost with the connection
    handshake(t, { seq: 2, full: false }, [live("k", entry.ts, "v")]);
    expect(t.r.pendingCount).toBe(0);
    expect(t.sent()).toEqual([]); // nothing to send again
  });

  it("settles a write that a newer broadcast overrides", () => {
    const t = replica();
    handshake(t, { time: "1764028800000-00000-srv" });
    const entry = t.r.set("k", "mine");
    t.sent();
    const newer = `${entry.ts.slice(0, 13)}-00099-other`;
    t.recv({ type: "ops", seq: 1, origin: "other", ops: [live("k", newer, "theirs")] });
    expect(t.r.pendingCount).toBe(0);
    expect(t.values()).toEqual({ k: "theirs" });
  });

  it("settles pending writes a snapshot already holds", () => {
    const t = replica({ pending: [live("k", "1764028750000-00000-web-a", "v"), live("j", "1764028750000-00001-web-a", 2)] });
    handshake(t, { seq: 3 }, [live("k", "1764028750000-00000-web-a", "v")]);
    expect(t.r.pendingEntries().map((e) => e.key)).toEqual(["j"]);
    expect(t.values()).toEqual({ k: "v", j: 2 });
  });

  it("rolls back writes a read-only connection refused, and writes no more", () => {
    const t = replica();
    handshake(t);
    t.r.set("k", 1);
    const [ops] = t.sent();
    t.recv({ type: "error", code: "forbidden", message: "read-only", id: ops!.id });
    expect(t.r.pendingCount).toBe(0);
    expect(t.values()).toEqual({});
    expect(t.r.readonly).toBe(true);
    expect(() => t.r.set("k", 2)).toThrow(/read-only/);
  });

  it("checks every value of an update before writing any", () => {
    const t = replica();
    expect(() => t.r.update([["a", 1], ["b", 2], ["c", "x".repeat(70_000)]])).toThrow(ProtocolError);
    expect(t.values()).toEqual({});
    expect(t.r.pendingCount).toBe(0);
    expect(t.r.update([["a", 1], ["b", 2]]).map((e) => e.key)).toEqual(["a", "b"]);
  });
});

describe("receiving", () => {
  it("merges broadcasts, records their origin, and advances the resume point", () => {
    const t = replica();
    handshake(t, { seq: 3 });
    t.recv({ type: "ops", seq: 5, origin: "tui-1", ops: [live("a", "1764028800001-00000-tui-1", "x"), gone("b", "1764028800002-00000-tui-1")] });
    expect(t.values()).toEqual({ a: "x" });
    expect(t.changes().map((c) => [c.key, c.source, c.origin])).toEqual([
      ["a", "remote", "tui-1"],
      ["b", "remote", "tui-1"],
    ]);
    expect(t.r.since).toEqual({ epoch: "e1", seq: 5 });
  });

  it("lets a newer local write stand against an older broadcast", () => {
    const t = replica();
    handshake(t, { time: "1764028800000-00000-srv" });
    t.tick(10);
    t.r.set("k", "mine");
    t.recv({ type: "ops", seq: 1, origin: "o", ops: [live("k", "1764028800001-00000-o", "theirs")] });
    expect(t.values()).toEqual({ k: "mine" });
  });

  it("observes received timestamps, so the next write orders after them", () => {
    const t = replica();
    handshake(t);
    const future = "1764028830000-00007-o";
    t.recv({ type: "ops", seq: 1, origin: "o", ops: [live("k", future, 1)] });
    expect(t.r.set("k", 2).ts > future).toBe(true);
    expect(t.values()).toEqual({ k: 2 });
  });

  it("skips an invalid entry from the server and reports it", () => {
    const t = replica();
    handshake(t);
    t.recv({ type: "ops", seq: 1, origin: "o", ops: [{ key: "k", ts: "yesterday", value: 1 }, live("j", "1764028800001-00000-o", 2)] });
    expect(t.values()).toEqual({ j: 2 });
    expect(t.events.some((e) => e.type === "error" && !e.fatal)).toBe(true);
  });

  it("tracks peers from the welcome and presence frames", () => {
    const t = replica();
    handshake(t, { peers: ["tui-1", "cli-2"] });
    t.recv({ type: "presence", joined: ["web-b"] }, { type: "presence", left: ["cli-2"] });
    expect([...t.r.peers].sort()).toEqual(["tui-1", "web-b"]);
    t.r.disconnect();
    expect(t.r.peers.size).toBe(0);
  });

  it("takes pong times into its clock", () => {
    const t = replica();
    handshake(t);
    t.r.ping();
    expect(t.sent()[0]).toMatchObject({ type: "ping" });
    t.recv({ type: "pong", id: 1, time: "1764028805000-00000-srv" });
    expect(t.r.set("k", 1).ts > "1764028805000-00000-srv").toBe(true);
  });

  it("ignores frames of types it does not know", () => {
    const t = replica();
    handshake(t);
    t.recv({ type: "future-thing", x: 1 });
    expect(t.events.filter((e) => e.type === "error")).toEqual([]);
  });
});

describe("persistence", () => {
  it("restores state and pending writes, and clocks after them", () => {
    const t = replica();
    handshake(t, { seq: 2 }, [live("a", "1764028800000-00000-x", 1)]);
    t.tick(5);
    t.r.set("b", 2);
    const again = replica({ state: t.r.state(), pending: t.r.pendingEntries() });
    expect(again.values()).toEqual({ a: 1, b: 2 });
    expect(again.r.pendingCount).toBe(1);
    expect(again.r.since).toEqual({ epoch: "e1", seq: 2 });
    const next = again.r.set("c", 3);
    expect(next.ts > t.r.pendingEntries()[0]!.ts).toBe(true);
  });

  it("keeps its clock's high-water mark, to stamp writes above it after a restart", () => {
    const t = replica();
    expect(t.r.clockMark).toBeNull();
    handshake(t, { time: "1764028800000-00000-srv" });
    const first = t.r.set("k", 1);
    expect(t.r.clockMark).toBe(first.ts);
    const [ops] = t.sent();
    t.recv({ type: "ack", id: ops!.id, seq: 1, applied: 1, ignored: 0 });
    expect(t.r.pendingEntries()).toEqual([]);
    t.recv({ type: "ops", origin: "tui-1", seq: 2, ops: [live("other", "1764028800500-00007-tui-1", 1)] });
    expect(t.r.clockMark).toBe("1764028800500-00007-web-a"); // observed, written as this node's

    // Made again from the mark alone (no state, nothing pending), its wall clock an hour behind.
    const again = replica({ clock: () => T0 - 3_600_000, clockMark: t.r.clockMark });
    const next = again.r.set("k", 2);
    expect(next.ts).toBe("1764028800500-00008-web-a");
    expect(next.ts > first.ts).toBe(true);
  });

  it("ignores a stored clock mark it cannot read", () => {
    const t = replica({ clockMark: "not a timestamp" });
    expect(t.r.clockMark).toBeNull();
    expect(t.r.set("k", 1).ts).toBe("1764028800000-00000-web-a");
  });

  it("skips stored entries it cannot read", () => {
    const t = replica({ state: { since: null, entries: [{ key: "", ts: "x" } as unknown as WireEntry, live("ok", "1764028800000-00000-x", 1)] } });
    expect(t.values()).toEqual({ ok: 1 });
  });

  it("discards undeliverable writes on request, rolled back to the server's entries", () => {
    const t = replica();
    handshake(t, { seq: 1 }, [live("j", "1764028700000-00000-srv", "server's")]);
    t.r.set("k", 1);
    t.r.set("j", 2);
    t.r.discardPending();
    expect(t.r.pendingCount).toBe(0);
    expect(t.values()).toEqual({ j: "server's" });
  });
});
