// The sync client's I/O layer, with a scripted socket and fake timers:
// reconnect with backoff, keep-alive, persistence of pending writes across a
// "reload", a refused handshake that waits for a token, a clock that never
// goes back across a reload; several server URLs: failover order, the view of
// the node connected to, and a move between nodes that keeps pending writes.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SyncClient, defaultServerUrl } from "../src/sync/client";
import { backoffDelay } from "../src/sync/rotation";
import { MemoryPersistence } from "../src/sync/storage";
import { FakeSocket } from "./fakeSocket";

/**
 * Storage whose lazy state save never lands (the page went away first): a
 * reload finds only what the client saves synchronously, with its writes.
 */
class NoStatePersistence extends MemoryPersistence {
  override saveState(): Promise<void> {
    return Promise.resolve();
  }
}

function setup(
  options: {
    persistence?: MemoryPersistence;
    token?: string;
    clock?: () => number;
    url?: string | string[];
    /** URLs whose socket cannot even be created (the constructor throws, as for a malformed URL). */
    unopenable?: string[];
  } = {},
) {
  const sockets: FakeSocket[] = [];
  const persistence = options.persistence ?? new MemoryPersistence();
  const client = new SyncClient({
    url: options.url ?? "ws://test/ws",
    doc: "d",
    node: "web-a",
    token: options.token ?? null,
    persistence,
    socket: (url) => {
      if (options.unopenable?.includes(url)) throw new SyntaxError(`cannot open ${url}`);
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    random: () => 1, // no jitter: the full delay
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  return { client, sockets, persistence, last: () => sockets[sockets.length - 1]! };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_764_028_800_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe("backoffDelay", () => {
  it("doubles up to the cap, with jitter in the upper half", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, 500, 10_000, () => 1))).toEqual([
      500, 1000, 2000, 4000, 8000, 10_000, 10_000,
    ]);
    expect(backoffDelay(3, 500, 10_000, () => 0)).toBe(2000);
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(2, 500, 10_000, Math.random);
      expect(delay).toBeGreaterThanOrEqual(1000);
      expect(delay).toBeLessThanOrEqual(2000);
    }
  });
});

describe("defaultServerUrl", () => {
  it("is ws beside the page, with the page's security", () => {
    expect(defaultServerUrl({ href: "http://127.0.0.1:8765/#/doc/x" })).toBe("ws://127.0.0.1:8765/ws");
    expect(defaultServerUrl({ href: "https://example.test/syncd/index.html?x=1#/doc/y" })).toBe("wss://example.test/syncd/ws");
  });
});

describe("SyncClient", () => {
  it("connects, says hello and goes live", async () => {
    const { client, last } = setup({ token: "t" });
    await client.start();
    expect(client.view().status).toBe("connecting");
    last().open();
    expect(last().sent[0]).toEqual({ type: "hello", v: 1, doc: "d", node: "web-a", token: "t" });
    last().welcome({ peers: ["tui-1"] });
    expect(client.view()).toMatchObject({ status: "live", peers: ["tui-1"], pending: 0, readonly: false });
    client.stop();
  });

  it("reconnects with growing delays, and resets them once live", async () => {
    const { client, sockets, last } = setup();
    await client.start();
    last().drop();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.view().status).toBe("offline");
    await vi.advanceTimersByTimeAsync(499);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
    last().drop();
    await vi.advanceTimersByTimeAsync(999);
    expect(sockets).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(3);
    last().open();
    last().welcome();
    last().drop();
    await vi.advanceTimersByTimeAsync(500);
    expect(sockets).toHaveLength(4); // back to the first delay
    client.stop();
  });

  it("keeps an offline write across a reload, and delivers it when the server is back", async () => {
    const persistence = new MemoryPersistence();
    const first = setup({ persistence });
    await first.client.start();
    first.last().drop(); // the server is down
    first.client.set("title", "written offline");
    expect(first.client.view().pending).toBe(1);
    expect(persistence.loadPending("web-a", "d")).toEqual([{ key: "title", ts: expect.any(String) as string, value: "written offline" }]);
    first.client.stop(); // the page goes away

    const second = setup({ persistence }); // the page is loaded again
    await second.client.start();
    expect(second.client.get("title")?.value).toBe("written offline");
    expect(second.client.view().pending).toBe(1);
    second.last().open();
    second.last().welcome();
    const [ops] = second.last().ops();
    expect(ops).toMatchObject({ ops: [{ key: "title", value: "written offline" }] });
    second.last().receive({ type: "ack", id: ops!.id, seq: 1, applied: 1, ignored: 0 });
    expect(second.client.view().pending).toBe(0);
    expect(persistence.loadPending("web-a", "d")).toEqual([]);
    second.client.stop();
  });

  it("saves its state and resumes with a delta after a reload", async () => {
    const persistence = new MemoryPersistence();
    const first = setup({ persistence });
    await first.client.start();
    first.last().open();
    first.last().welcome({ seq: 9 }, [{ key: "a", ts: "1764028700000-00000-x", value: 1 }]);
    await vi.advanceTimersByTimeAsync(1000);
    first.client.stop();

    const second = setup({ persistence });
    await second.client.start();
    expect(second.client.get("a")?.value).toBe(1);
    second.last().open();
    expect(second.last().sent[0]).toMatchObject({ since: { epoch: "e1", seq: 9 } });
    second.client.stop();
  });

  // Contract §2: a client never issues a timestamp below one it issued before.
  // Its acknowledged writes are no longer pending, and the state that holds them
  // is saved lazily: the clock's high-water mark must survive with the pending
  // writes, or a write after a reload loses to the same client's earlier one.
  it.each([
    { name: "its wall clock went back", serverAheadMs: 0, backMs: 5 * 60_000 },
    { name: "the server's clock offset is not learnt again yet", serverAheadMs: 5 * 60_000, backMs: 0 },
  ])("stamps writes after a reload above its acknowledged ones when $name", async ({ serverAheadMs, backMs }) => {
    const T = 1_764_028_800_000;
    let wall = T;
    const persistence = new NoStatePersistence();
    const first = setup({ persistence, clock: () => wall });
    await first.client.start();
    first.last().open();
    first.last().welcome({ time: `${T + serverAheadMs}-00000-srv` });
    const issued: string[] = [];
    for (const value of ["one", "two", "three"]) {
      issued.push(first.client.set("title", value).ts);
      wall += 10;
    }
    for (const ops of first.last().ops()) {
      first.last().receive({ type: "ack", id: ops.id, seq: Number(ops.id), applied: 1, ignored: 0 });
    }
    expect(first.client.view().pending).toBe(0);
    expect(persistence.loadPending("web-a", "d")).toEqual([]);
    first.client.stop(); // the page goes away; its state save never lands

    wall -= backMs;
    const second = setup({ persistence, clock: () => wall }); // reloaded, the server still down
    await second.client.start();
    second.last().drop();
    const next = second.client.set("title", "after the reload").ts;
    for (const ts of issued) expect(next > ts, `${next} > ${ts}`).toBe(true);
    second.client.stop();
  });

  it("waits for a token after unauthorized, then connects with it", async () => {
    const { client, sockets, last } = setup();
    await client.start();
    last().open();
    last().receive({ type: "error", code: "unauthorized", message: "a valid token is required" });
    last().drop(1008);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1); // no retrying with the same (missing) token
    expect(client.view().status).toBe("unauthorized");
    client.setToken("s3cret");
    expect(sockets).toHaveLength(2);
    last().open();
    expect(last().sent[0]).toMatchObject({ token: "s3cret" });
    client.stop();
  });

  it("pings once live and then every 15 s, and closes a connection that went silent", async () => {
    const { client, last } = setup();
    await client.start();
    last().open();
    last().welcome();
    expect(last().sent.filter((f) => f.type === "ping")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(15_000);
    expect(last().sent.filter((f) => f.type === "ping")).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(last().closed).toBe(4001);
    client.stop();
  });

  it("learns the server's clock from its first pong, not only from a welcome it read late", async () => {
    const T = 1_764_028_800_000;
    let wall = T;
    const { client, last } = setup({ clock: () => wall });
    await client.start();
    last().open();
    wall += 400; // the page was busy: it reads the welcome, stamped by the server at T, 400 ms late
    last().welcome({ time: `${T}-00000-srv` });
    const [ping] = last().sent.filter((f) => f.type === "ping");
    wall += 20; // the pong comes back 20 ms after the ping; the server read its clock halfway
    last().receive({ type: "pong", id: ping!.id, time: `${T + 410}-00000-srv` });
    wall += 1000;
    // The clocks agree: a write now is stamped now, not 400 ms behind.
    expect(client.set("k", 1).ts).toBe(`${T + 1420}-00000-web-a`);
    client.stop();
  });

  it("gives up a handshake that does not finish", async () => {
    const { client, last } = setup();
    await client.start();
    last().open();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(last().closed).toBe(4000);
    client.stop();
  });

  it("resends refused-for-now writes after the delay", async () => {
    const { client, last } = setup();
    await client.start();
    last().open();
    last().welcome();
    client.set("k", 1);
    const [ops] = last().ops();
    last().receive({ type: "error", code: "rate_limited", message: "slow down", id: ops!.id });
    await vi.advanceTimersByTimeAsync(2000);
    expect(last().ops()).toHaveLength(2);
    client.stop();
  });
});

describe("SyncClient with several servers", () => {
  const A = "ws://a.test/ws";
  const B = "ws://b.test/ws";
  const C = "ws://c.test/ws";

  it("tries the next URL at once, and backs off only after a whole round failed", async () => {
    const { client, sockets, last } = setup({ url: [A, B, C] });
    await client.start();
    expect(last().url).toBe(A);
    last().open();
    last().welcome({ node: "srv-a" });
    last().drop(); // A is lost: B at once
    expect(sockets.map((socket) => socket.url)).toEqual([A, B]);
    last().drop(); // B refuses the connection: C at once
    expect(sockets.map((socket) => socket.url)).toEqual([A, B, C]);
    last().drop(); // C too: the round failed, so wait
    expect(client.view()).toMatchObject({ status: "offline", url: A, serverNode: null });
    await vi.advanceTimersByTimeAsync(499);
    expect(sockets).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets.map((socket) => socket.url)).toEqual([A, B, C, A]);
    last().drop();
    last().drop();
    expect(sockets.map((socket) => socket.url)).toEqual([A, B, C, A, B, C]);
    last().drop(); // a second round failed: the backoff grows
    await vi.advanceTimersByTimeAsync(999);
    expect(sockets).toHaveLength(6);
    await vi.advanceTimersByTimeAsync(1);
    expect(last().url).toBe(A);
    last().drop(); // A still down: B at once, and B answers
    last().open();
    last().welcome({ node: "srv-b" });
    expect(client.view()).toMatchObject({ status: "live", url: B, serverNode: "srv-b" });
    last().drop(); // B lost after a handshake: a new round, C at once
    expect(last().url).toBe(C);
    client.stop();
  });

  it("moves on from a node that does not answer, cannot be opened, or refuses for itself", async () => {
    const { client, sockets, last } = setup({ url: [A, B, C], unopenable: [B] });
    await client.start();
    await vi.advanceTimersByTimeAsync(10_000); // A never opens: given up by the handshake timeout
    expect(sockets[0]!.closed).toBe(4000);
    await vi.advanceTimersByTimeAsync(0);
    // B's socket cannot be created: C at once.
    expect(sockets.map((socket) => socket.url)).toEqual([A, C]);
    expect(client.view().error).toMatchObject({ code: "connection" });
    last().open();
    last().receive({ type: "error", code: "internal", message: "the disk is full" });
    await vi.advanceTimersByTimeAsync(0); // C closes: the round failed, wait, then A again
    expect(client.view()).toMatchObject({ status: "offline", url: A, error: { code: "internal" } });
    await vi.advanceTimersByTimeAsync(500);
    expect(sockets.map((socket) => socket.url)).toEqual([A, C, A]);
    client.stop();
  });

  it.each(["unauthorized", "unsupported_version"])("stops at %s, which every node would answer alike", async (code) => {
    const { client, sockets, last } = setup({ url: [A, B] });
    await client.start();
    last().open();
    last().receive({ type: "error", code, message: "refused" });
    last().drop(1008);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1);
    expect(client.view().status).toBe(code === "unauthorized" ? "unauthorized" : "failed");
    client.reconnect(); // the caller changed something: A again, then on as before
    expect(sockets.map((socket) => socket.url)).toEqual([A, A]);
    last().drop();
    expect(last().url).toBe(B);
    client.stop();
  });

  it("shows the node and cluster of this connection only, and the URL", async () => {
    const { client, last } = setup({ url: [A, B] });
    await client.start();
    expect(client.view()).toMatchObject({ status: "connecting", url: A, urls: [A, B], serverNode: null, cluster: null });
    last().open();
    last().welcome({ node: "srv-a", cluster: "c-1" });
    expect(client.view()).toMatchObject({ status: "live", url: A, serverNode: "srv-a", cluster: "c-1" });
    last().drop();
    // Connecting to B: A's welcome no longer describes the connection.
    expect(client.view()).toMatchObject({ status: "connecting", url: B, serverNode: null, cluster: null });
    last().open();
    last().welcome({ node: "srv-b" }); // a single server: no cluster
    expect(client.view()).toMatchObject({ status: "live", url: B, serverNode: "srv-b", cluster: null });
    client.stop();
  });

  // Each node has its own epoch: the move brings a snapshot, which drops the
  // keys it lacks except those with pending writes (contract §4); the pending
  // writes and the clock's mark are kept (storage is keyed by node id and
  // document, never by URL) and delivered to the new node.
  it("moves to another node keeping its pending writes and clock mark, merging the new node's snapshot", async () => {
    const persistence = new MemoryPersistence();
    const { client, last } = setup({ url: [A, B], persistence });
    await client.start();
    last().open();
    last().welcome({ node: "srv-a", cluster: "c-1", epoch: "ea", seq: 2 }, [
      { key: "kept", ts: "1764028700000-00000-x", value: 1 },
      { key: "gone", ts: "1764028700001-00000-x", value: 2 },
    ]);
    await vi.advanceTimersByTimeAsync(1000); // the state is saved
    const written = client.set("mine", "written before the move");
    const mark = persistence.loadClock("web-a", "d");
    expect(mark).not.toBeNull();
    last().drop(); // A is lost before it acknowledged the write

    expect(last().url).toBe(B);
    last().open();
    expect(last().sent[0]).toMatchObject({ type: "hello", since: { epoch: "ea", seq: 2 } });
    last().welcome({ node: "srv-b", cluster: "c-1", epoch: "eb", seq: 7, full: true }, [{ key: "kept", ts: "1764028700000-00000-x", value: 1 }]);
    // Merged, not replaced: B may not have "gone" yet, so it stays and is relayed to B.
    expect(client.get("kept")?.value).toBe(1);
    expect(client.get("gone")?.value).toBe(2);
    expect(client.get("mine")?.value).toBe("written before the move");
    expect(client.view()).toMatchObject({ status: "live", serverNode: "srv-b", pending: 2, since: { epoch: "eb", seq: 7 } });
    expect(persistence.loadPending("web-a", "d")).toEqual([
      { key: "mine", ts: written.ts, value: "written before the move" },
      { key: "gone", ts: "1764028700001-00000-x", value: 2 },
    ]);
    expect(persistence.loadClock("web-a", "d")! >= mark!).toBe(true);

    const [ops] = last().ops();
    expect(ops).toMatchObject({
      ops: [
        { key: "mine", ts: written.ts, value: "written before the move" },
        { key: "gone", ts: "1764028700001-00000-x", value: 2 },
      ],
    });
    last().receive({ type: "ack", id: ops!.id, seq: 9, applied: 2, ignored: 0 });
    expect(client.view()).toMatchObject({ pending: 0, since: { epoch: "eb", seq: 9 } });
    expect(persistence.loadPending("web-a", "d")).toEqual([]);
    client.stop();
  });
});
