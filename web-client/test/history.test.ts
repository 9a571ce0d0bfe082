// The history requests (`history`, `conflicts`): their frames, how their
// answers are read and checked, and the client matching answers to requests
// by id, waiting for a live connection, and failing with typed errors — with
// a scripted socket and fake timers. Also: a write that lost shows in the view.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SyncClient } from "../src/sync/client";
import { RequestError } from "../src/sync/errors";
import { conflictsFrame, historyFrame, parseAnswerFrame } from "../src/sync/frames";
import { FIRST_REQUEST_ID } from "../src/sync/requests";
import { MemoryPersistence } from "../src/sync/storage";
import { FakeSocket, type Frame } from "./fakeSocket";

const T1 = "1764028700000-00002-tui-9f8e7d6c";
const T2 = "1764028800123-00000-cli-1a2b3c4d";

function setup(options: { requestTimeoutMs?: number } = {}) {
  const sockets: FakeSocket[] = [];
  const client = new SyncClient({
    url: "ws://test/ws",
    doc: "d",
    node: "web-a",
    persistence: new MemoryPersistence(),
    socket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    random: () => 1,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  });
  return { client, last: () => sockets[sockets.length - 1]! };
}

/** A started client on a live connection. */
async function live(options: { requestTimeoutMs?: number } = {}) {
  const context = setup(options);
  await context.client.start();
  context.last().open();
  context.last().welcome();
  expect(context.client.view().status).toBe("live");
  return context;
}

/** The request frames sent on `socket` of `type`. */
function sentOf(socket: FakeSocket, type: string): Frame[] {
  return socket.sent.filter((frame) => frame.type === type);
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_764_028_800_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe("request frames", () => {
  it("leave out the fields not given", () => {
    expect(JSON.parse(historyFrame(7, "title"))).toEqual({ type: "history", id: 7, key: "title" });
    expect(JSON.parse(historyFrame(7, "title", { limit: 2, before: T2 }))).toEqual({ type: "history", id: 7, key: "title", limit: 2, before: T2 });
    expect(JSON.parse(conflictsFrame(8))).toEqual({ type: "conflicts", id: 8 });
    expect(JSON.parse(conflictsFrame(8, { node: "web-a", limit: 5, before: 12 }))).toEqual({ type: "conflicts", id: 8, node: "web-a", limit: 5, before: 12 });
  });
});

describe("parseAnswerFrame", () => {
  it("reads a history page: values (null included), deletes, the writer from the ts", () => {
    const text = JSON.stringify({
      type: "history_page",
      id: 7,
      key: "title",
      versions: [
        { ts: T2, node: "cli-1a2b3c4d", deleted: true },
        { ts: T1, node: "tui-9f8e7d6c", value: null },
      ],
      next: T1,
    });
    expect(parseAnswerFrame(text)).toEqual({
      type: "history_page",
      id: 7,
      key: "title",
      versions: [
        { ts: T2, node: "cli-1a2b3c4d", kind: "deleted" },
        { ts: T1, node: "tui-9f8e7d6c", kind: "value", value: null },
      ],
      next: T1,
    });
  });

  it("reads a conflicts page, whose winner may have left the history", () => {
    const text = JSON.stringify({
      type: "conflicts_page",
      id: 8,
      conflicts: [{ id: 12, time: 1764028800500, key: "title", lost: { ts: T1, value: "Mine" }, winner: { ts: T2, node: "cli-1a2b3c4d" } }],
      next: null,
    });
    expect(parseAnswerFrame(text)).toEqual({
      type: "conflicts_page",
      id: 8,
      conflicts: [
        {
          id: 12,
          time: 1764028800500,
          key: "title",
          lost: { ts: T1, node: "tui-9f8e7d6c", kind: "value", value: "Mine" },
          winner: { ts: T2, node: "cli-1a2b3c4d", kind: "unknown" },
        },
      ],
      next: null,
    });
  });

  it("leaves every other frame to the replica", () => {
    expect(parseAnswerFrame(JSON.stringify({ type: "ack", id: 1, seq: 2, applied: 1, ignored: 0 }))).toBeNull();
    expect(parseAnswerFrame(JSON.stringify({ type: "state_page", id: 1, entries: [], next: null }))).toBeNull();
    // An error without an id answers no request.
    expect(parseAnswerFrame(JSON.stringify({ type: "error", code: "bad_message", message: "no id" }))).toBeNull();
  });

  it("reads an error carrying an id", () => {
    expect(parseAnswerFrame(JSON.stringify({ type: "error", code: "too_large", message: "limit 5000", id: 9 }))).toEqual({
      type: "error",
      code: "too_large",
      message: "limit 5000",
      id: 9,
      entry: null,
    });
  });

  it.each([
    ["a version without ts", { type: "history_page", id: 3, key: "k", versions: [{ value: 1 }], next: null }],
    ["a version with a bad ts", { type: "history_page", id: 3, key: "k", versions: [{ ts: "yesterday", value: 1 }], next: null }],
    ["a history version neither value nor delete", { type: "history_page", id: 3, key: "k", versions: [{ ts: T1 }], next: null }],
    ["versions not a list", { type: "history_page", id: 3, key: "k", versions: {}, next: null }],
    ["a cursor that is no ts", { type: "history_page", id: 3, key: "k", versions: [], next: 5 }],
    ["a conflict without id", { type: "conflicts_page", id: 3, conflicts: [{ key: "k", lost: { ts: T1, value: 1 }, winner: { ts: T2 } }], next: null }],
    ["a lost write of unknown content", { type: "conflicts_page", id: 3, conflicts: [{ id: 1, key: "k", lost: { ts: T1 }, winner: { ts: T2 } }], next: null }],
    ["a cursor that is no id", { type: "conflicts_page", id: 3, conflicts: [], next: "x" }],
  ])("refuses %s, naming the request's id", (_what, frame) => {
    let thrown: unknown;
    try {
      parseAnswerFrame(JSON.stringify(frame));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ name: "ProtocolError", code: "bad_message", id: 3 });
  });

  it("refuses an answer without an id, and text that is no JSON", () => {
    expect(() => parseAnswerFrame(JSON.stringify({ type: "history_page", key: "k", versions: [], next: null }))).toThrow(/"id"/);
    expect(() => parseAnswerFrame("{nope")).toThrow(/not JSON/);
  });
});

describe("SyncClient.history and .conflicts", () => {
  it("send a request with a fresh id and resolve with the answer carrying it, in any order", async () => {
    const { client, last } = await live();
    const first = client.history("title", { limit: 2 });
    const second = client.conflicts({ node: "web-a" });
    await vi.advanceTimersByTimeAsync(0);
    const [history] = sentOf(last(), "history");
    const [conflicts] = sentOf(last(), "conflicts");
    expect(history).toEqual({ type: "history", id: FIRST_REQUEST_ID, key: "title", limit: 2 });
    expect(conflicts).toEqual({ type: "conflicts", id: FIRST_REQUEST_ID + 1, node: "web-a" });

    last().receive({ type: "conflicts_page", id: conflicts!.id, conflicts: [], next: null });
    last().receive({ type: "history_page", id: history!.id, key: "title", versions: [{ ts: T1, value: "Draft" }], next: T1 });
    await expect(second).resolves.toEqual({ conflicts: [], next: null });
    await expect(first).resolves.toEqual({ key: "title", versions: [{ ts: T1, node: "tui-9f8e7d6c", kind: "value", value: "Draft" }], next: T1 });
  });

  it("never take an ops id, so an error about a write still rolls the write back", async () => {
    const { client, last } = await live();
    client.set("k", 1);
    const request = client.history("k");
    await vi.advanceTimersByTimeAsync(0);
    const [ops] = last().ops();
    const [history] = sentOf(last(), "history");
    expect(ops!.id).not.toBe(history!.id);
    last().receive({ type: "error", code: "bad_message", message: "bad write", id: ops!.id });
    expect(client.view().refused).toMatchObject({ code: "bad_message", keys: ["k"] });
    expect(client.get("k")).toBeUndefined();
    // The request still waits for its own answer.
    last().receive({ type: "history_page", id: history!.id, key: "k", versions: [], next: null });
    await expect(request).resolves.toEqual({ key: "k", versions: [], next: null });
  });

  it("fail with the server's code when it answers with an error", async () => {
    const { client, last } = await live();
    const request = client.history("k", { limit: 5000 });
    await vi.advanceTimersByTimeAsync(0);
    const [history] = sentOf(last(), "history");
    last().receive({ type: "error", code: "too_large", message: '"limit" 5000 is over the most of 1000', id: history!.id });
    const error = await request.catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(RequestError);
    expect(error).toMatchObject({ reason: "refused", code: "too_large" });
    expect((error as Error).message).toMatch(/over the most of 1000/);
    // The error answered the request: it is not the connection's error.
    expect(client.view().error).toBeNull();
  });

  it("fail as invalid when the answer is malformed", async () => {
    const { client, last } = await live();
    const request = client.conflicts();
    await vi.advanceTimersByTimeAsync(0);
    const [conflicts] = sentOf(last(), "conflicts");
    last().receive({ type: "conflicts_page", id: conflicts!.id, conflicts: "none", next: null });
    await expect(request).rejects.toMatchObject({ reason: "invalid" });
    // A page of the other kind for its id is no answer either.
    const again = client.conflicts();
    await vi.advanceTimersByTimeAsync(0);
    const id = sentOf(last(), "conflicts")[1]!.id;
    last().receive({ type: "history_page", id, key: "k", versions: [], next: null });
    await expect(again).rejects.toMatchObject({ reason: "invalid" });
  });

  it("wait for the connection to be live, then send", async () => {
    const { client, last } = setup();
    await client.start();
    const request = client.history("title");
    await vi.advanceTimersByTimeAsync(0);
    last().open(); // hello sent, no welcome yet
    await vi.advanceTimersByTimeAsync(0);
    expect(sentOf(last(), "history")).toEqual([]);
    last().welcome();
    await vi.advanceTimersByTimeAsync(0);
    const [history] = sentOf(last(), "history");
    last().receive({ type: "history_page", id: history!.id, key: "title", versions: [], next: null });
    await expect(request).resolves.toMatchObject({ versions: [] });
  });

  it("fail with a timeout when the connection is not live in time, or the answer does not come", async () => {
    const { client, last } = setup({ requestTimeoutMs: 3000 });
    await client.start();
    const request = client.history("title");
    const failed = request.catch((thrown: unknown) => thrown);
    await vi.advanceTimersByTimeAsync(3001);
    expect(await failed).toMatchObject({ reason: "timeout" });
    expect(sentOf(last(), "history")).toEqual([]);

    last().open();
    last().welcome();
    const unanswered = client.history("title").catch((thrown: unknown) => thrown);
    await vi.advanceTimersByTimeAsync(2999);
    expect(sentOf(last(), "history")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2);
    expect(await unanswered).toMatchObject({ reason: "timeout" });
    // A late answer is ignored.
    const id = sentOf(last(), "history")[0]!.id;
    last().receive({ type: "history_page", id, key: "title", versions: [], next: null });
    expect(client.view().error).toBeNull();
  });

  it("fail when the connection closes before the answer, and are not sent again", async () => {
    const { client, last } = await live();
    const request = client.history("title").catch((thrown: unknown) => thrown);
    await vi.advanceTimersByTimeAsync(0);
    const before = last();
    before.drop();
    expect(await request).toMatchObject({ reason: "disconnected" });
    await vi.advanceTimersByTimeAsync(1000);
    last().open();
    last().welcome();
    expect(last()).not.toBe(before);
    expect(sentOf(last(), "history")).toEqual([]);
  });

  it("fail at once when the client is stopped or the server refused the token", async () => {
    const { client, last } = setup();
    await client.start();
    const waiting = client.history("title").catch((thrown: unknown) => thrown);
    last().open();
    last().receive({ type: "error", code: "unauthorized", message: "a token is needed" });
    expect(await waiting).toMatchObject({ reason: "unavailable" });
    await expect(client.conflicts()).rejects.toMatchObject({ reason: "unavailable" });
    client.stop();
    await expect(client.history("title")).rejects.toMatchObject({ reason: "unavailable" });
  });
});

describe("a write that lost", () => {
  it("is in the view's lost writes, with the entry that beat it, until dismissed", async () => {
    const { client, last } = setup();
    await client.start();
    client.set("title", "mine"); // offline: pending
    const mine = client.get("title")!;
    last().open();
    const newer = `${Number(mine.ts.slice(0, 13)) + 1000}-00000-web-b`; // written a second later, elsewhere
    last().welcome({ seq: 1 }, [{ key: "title", ts: newer, value: "theirs" }]);
    expect(client.get("title")?.value).toBe("theirs");
    const [lost] = client.view().lost;
    expect(lost?.write).toEqual({ key: "title", ts: mine.ts });
    expect(lost?.winner.ts).toBe(newer);
    expect(lost?.winner.value).toBe("theirs");
    client.clearLost();
    expect(client.view().lost).toEqual([]);
  });
});
