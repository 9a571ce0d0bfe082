// @vitest-environment jsdom
// The history drawer, the overridden writes, the row's history shortcut and the
// notice of a lost change, rendered in jsdom around a real SyncClient whose
// server side the test plays (a scripted socket): what they list, which
// requests they send, what Restore writes, and what they say when they cannot.
import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { userEvent } from "@testing-library/user-event";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { SyncClient } from "../src/sync/client";
import { MemoryPersistence } from "../src/sync/storage";
import { ConflictsPanel } from "../src/ui/ConflictsPanel";
import { EntryTable } from "../src/ui/EntryTable";
import { HistoryDrawer } from "../src/ui/HistoryDrawer";
import { LostNotice } from "../src/ui/LostNotice";
import { FakeSocket, type Frame } from "./fakeSocket";

const ME = "web-me";
const T1 = "1764028700000-00000-web-me";
const T2 = "1764028750000-00001-tui-9f8e7d6c";
const T3 = "1764028800000-00000-web-me";

const noop = (): void => undefined;
const clients: SyncClient[] = [];

beforeAll(() => {
  // jsdom lays nothing out, so it has no scrollIntoView (the panel scrolls to the conflict it points out).
  Element.prototype.scrollIntoView = noop;
});

afterEach(() => {
  cleanup();
  for (const client of clients.splice(0)) client.stop();
});

/** A started client on a live connection; `entries` are the document's, `readonly` the token's. */
async function live(entries: Frame[] = [], readonly = false): Promise<{ client: SyncClient; socket: FakeSocket }> {
  const sockets: FakeSocket[] = [];
  const client = new SyncClient({
    url: "ws://test/ws",
    doc: "d",
    node: ME,
    persistence: new MemoryPersistence(),
    socket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
  });
  clients.push(client);
  await client.start();
  const socket = sockets[0]!;
  act(() => {
    socket.open();
    socket.welcome({ seq: entries.length, readonly }, entries);
  });
  return { client, socket };
}

/** The next request of `type` the client sent (waiting for it), not yet answered. */
async function requested(socket: FakeSocket, type: string, answered: Set<number>): Promise<Frame> {
  return waitFor(() => {
    const frame = socket.sent.find((sent) => sent.type === type && !answered.has(sent.id as number));
    if (frame === undefined) throw new Error(`no ${type} request yet`);
    answered.add(frame.id as number);
    return frame;
  });
}

function answer(socket: FakeSocket, frame: Frame): void {
  act(() => socket.receive(frame));
}

describe("HistoryDrawer", () => {
  it("lists the versions newest first, pages to older ones, and restores a value as a new write", async () => {
    const { client, socket } = await live([{ key: "title", ts: T3, value: "Final" }]);
    const answered = new Set<number>();
    const announced: string[] = [];
    render(<HistoryDrawer client={client} entryKey="title" onAnnounce={(text) => announced.push(text)} onClose={noop} />);
    const dialog = screen.getByRole("dialog", { name: "History of title" });
    expect(document.activeElement?.textContent).toBe("History of title");

    const first = await requested(socket, "history", answered);
    expect(first).toMatchObject({ key: "title", limit: 50 });
    expect(first.before).toBeUndefined();
    answer(socket, {
      type: "history_page",
      id: first.id,
      key: "title",
      versions: [
        { ts: T3, value: "Final" },
        { ts: T2, deleted: true },
      ],
      next: T2,
    });
    const items = await within(dialog).findAllByRole("listitem");
    expect(items.map((item) => item.querySelector(".version-value")?.textContent)).toEqual(["Final", "deleted"]);
    // This tab's writes are "you"; others' are named by their node; the one the key holds now is current.
    expect(items[0]!.querySelector(".writer")?.textContent).toBe("you");
    expect(items[1]!.querySelector(".writer")?.textContent).toBe("tui-9f8e7d6c");
    expect(within(items[0]!).getByText("current")).toBeTruthy();
    expect(within(items[0]!).getByRole("button", { name: /^Restore/ })).toHaveProperty("disabled", true);

    await userEvent.click(within(dialog).getByRole("button", { name: "Older versions" }));
    const older = await requested(socket, "history", answered);
    expect(older).toMatchObject({ key: "title", before: T2, limit: 50 });
    answer(socket, { type: "history_page", id: older.id, key: "title", versions: [{ ts: T1, value: { draft: 1 } }], next: null });
    await waitFor(() => expect(within(dialog).getAllByRole("listitem")).toHaveLength(3));
    expect(within(dialog).queryByRole("button", { name: "Older versions" })).toBeNull();

    const opsBefore = socket.ops().length;
    const oldest = within(dialog).getAllByRole("listitem")[2]!;
    await userEvent.click(within(oldest).getByRole("button", { name: /^Restore title to its value of / }));
    expect(client.get("title")?.value).toEqual({ draft: 1 });
    const [write] = socket.ops().slice(opsBefore);
    const [op] = write!.ops as Frame[];
    expect(op).toMatchObject({ key: "title", value: { draft: 1 } });
    expect((op!.ts as string) > T3).toBe(true); // a new write, newer than every version
    expect(announced.at(-1)).toMatch(/^Restored title to its value of /);
  });

  it("restores a delete as a delete", async () => {
    const { client, socket } = await live([{ key: "gone", ts: T3, value: 1 }]);
    const answered = new Set<number>();
    render(<HistoryDrawer client={client} entryKey="gone" onAnnounce={noop} onClose={noop} />);
    const request = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: request.id, key: "gone", versions: [{ ts: T3, value: 1 }, { ts: T2, deleted: true }], next: null });
    await userEvent.click(await screen.findByRole("button", { name: /^Restore gone to its delete of / }));
    expect(client.get("gone")).toBeUndefined();
    expect((socket.ops().at(-1)!.ops as Frame[])[0]).toMatchObject({ key: "gone", deleted: true });
  });

  it("reads the history again once a write of the key is acknowledged", async () => {
    const { client, socket } = await live([{ key: "k", ts: T1, value: 1 }]);
    const answered = new Set<number>();
    render(<HistoryDrawer client={client} entryKey="k" onAnnounce={noop} onClose={noop} />);
    const first = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: first.id, key: "k", versions: [{ ts: T1, value: 1 }], next: null });
    const reads = (): Frame[] => socket.sent.filter((sent) => sent.type === "history");
    act(() => {
      client.set("k", 2);
    });
    // The key changed here: read again (the server does not have the write yet).
    const sending = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: sending.id, key: "k", versions: [{ ts: T1, value: 1 }], next: null });
    const before = reads().length;
    const write = socket.ops().at(-1)!;
    answer(socket, { type: "ack", id: write.id, seq: 2, applied: 1, ignored: 0 });
    // Acknowledged: the server has the version, read once more.
    await waitFor(() => expect(reads()).toHaveLength(before + 1));
    expect(reads().at(-1)!.before).toBeUndefined();
  });

  it("keeps Restore off with a read-only token, and says why", async () => {
    const { client, socket } = await live([{ key: "k", ts: T3, value: 2 }], true);
    const answered = new Set<number>();
    render(<HistoryDrawer client={client} entryKey="k" onAnnounce={noop} onClose={noop} />);
    const request = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: request.id, key: "k", versions: [{ ts: T3, value: 2 }, { ts: T1, value: 1 }], next: null });
    const buttons = await screen.findAllByRole("button", { name: /^Restore k to its value of /, description: /read-only/ });
    expect(buttons.map((button) => (button as HTMLButtonElement).disabled)).toEqual([true, true]);
  });

  it("says so when the server keeps no history, and when its change has not reached the server", async () => {
    const { client, socket } = await live([{ key: "k", ts: T3, value: 2 }]);
    const answered = new Set<number>();
    render(<HistoryDrawer client={client} entryKey="k" onAnnounce={noop} onClose={noop} />);
    const request = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: request.id, key: "k", versions: [], next: null });
    expect((await screen.findByTestId("history-empty")).textContent).toMatch(/keeps no history \(it runs with --history-retention 0\)/);
    cleanup();

    act(() => {
      client.set("fresh", true);
    });
    render(<HistoryDrawer client={client} entryKey="fresh" onAnnounce={noop} onClose={noop} />);
    const fresh = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: fresh.id, key: "fresh", versions: [], next: null });
    expect((await screen.findByTestId("history-empty")).textContent).toMatch(/has not reached the server/);
  });

  it("shows a refused request with the server's words, and asks again on Try again", async () => {
    const { client, socket } = await live([{ key: "k", ts: T3, value: 2 }]);
    const answered = new Set<number>();
    render(<HistoryDrawer client={client} entryKey="k" onAnnounce={noop} onClose={noop} />);
    const request = await requested(socket, "history", answered);
    answer(socket, { type: "error", code: "internal", message: "the history file cannot be read", id: request.id });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toMatch(/could not be read.*the history file cannot be read/);
    await userEvent.click(within(alert).getByRole("button", { name: "Try again" }));
    const again = await requested(socket, "history", answered);
    answer(socket, { type: "history_page", id: again.id, key: "k", versions: [{ ts: T3, value: 2 }], next: null });
    await waitFor(() => expect(screen.queryByRole("alert")).toBeNull());
    expect(screen.getAllByRole("listitem")).toHaveLength(1);
  });

  it("closes on Escape and on Close, giving the focus back to what opened it", async () => {
    const { client } = await live([{ key: "k", ts: T3, value: 2 }]);
    const onClose = vi.fn();
    const opener = document.createElement("button");
    document.body.append(opener);
    opener.focus();
    const { unmount } = render(<HistoryDrawer client={client} entryKey="k" onAnnounce={noop} onClose={onClose} />);
    expect(document.activeElement).not.toBe(opener);
    fireEvent.keyDown(document.activeElement!, { key: "Escape" });
    expect(onClose).toHaveBeenCalledTimes(1);
    await userEvent.click(screen.getByRole("button", { name: "Close" }));
    expect(onClose).toHaveBeenCalledTimes(2);
    unmount();
    expect(document.activeElement).toBe(opener);
    opener.remove();
  });
});

describe("ConflictsPanel", () => {
  const conflicts = [
    { id: 9, time: 1764028801000, key: "plan", lost: { ts: T1, value: "mine" }, winner: { ts: T2, value: "theirs" } },
    { id: 4, time: 1764028700000, key: "note", lost: { ts: T2, deleted: true }, winner: { ts: T3 } },
  ];

  it("lists the overridden writes, this tab's marked, each key a link to its history", async () => {
    const { client, socket } = await live();
    const answered = new Set<number>();
    const opened: string[] = [];
    render(<ConflictsPanel client={client} target={{ key: "plan", ts: T1 }} onOpenHistory={(key) => opened.push(key)} onClose={noop} />);
    const request = await requested(socket, "conflicts", answered);
    expect(request.node).toBeUndefined();
    answer(socket, { type: "conflicts_page", id: request.id, conflicts, next: null });
    const items = await screen.findAllByRole("listitem");
    expect(items.map((item) => item.className)).toEqual(["conflict mine target", "conflict"]);
    expect(items[0]!.getAttribute("aria-current")).toBe("true");
    expect(items[0]!.textContent).toMatch(/Overriddenmine by you.*Wontheirs by tui-9f8e7d6c/);
    expect(items[1]!.textContent).toMatch(/Overriddendeleted by tui-9f8e7d6c.*Wonvalue no longer in the history by you/);
    expect(screen.queryByTestId("target-missing")).toBeNull();
    await userEvent.click(screen.getByRole("button", { name: "History of note" }));
    expect(opened).toEqual(["note"]);
  });

  it("asks for this tab's only, and says when a lost change is not in the record", async () => {
    const { client, socket } = await live();
    const answered = new Set<number>();
    render(<ConflictsPanel client={client} target={{ key: "plan", ts: T3 }} onOpenHistory={noop} onClose={noop} />);
    const first = await requested(socket, "conflicts", answered);
    answer(socket, { type: "conflicts_page", id: first.id, conflicts, next: null });
    expect((await screen.findByTestId("target-missing")).textContent).toMatch(/is not in the server's record/);
    await userEvent.click(screen.getByLabelText("Only mine"));
    const mine = await requested(socket, "conflicts", answered);
    expect(mine.node).toBe(ME);
    answer(socket, { type: "conflicts_page", id: mine.id, conflicts: [], next: null });
    expect((await screen.findByTestId("conflicts-empty")).textContent).toMatch(/None of your writes was overridden/);
  });
});

describe("EntryTable", () => {
  it("opens a key's history from its button or with h in its row, read-only too", async () => {
    const { client } = await live([{ key: "a", ts: T1, value: 1 }], true);
    const opened: string[] = [];
    render(
      <EntryTable
        client={client}
        entries={client.entries()}
        total={1}
        readonly
        highlights={new Map()}
        waiting={false}
        onAnnounce={noop}
        onOpenHistory={(key) => opened.push(key)}
      />,
    );
    await userEvent.click(screen.getByRole("button", { name: "History of a" }));
    const cell = screen.getByRole("rowheader", { name: "a" });
    cell.focus();
    await userEvent.keyboard("h");
    expect(opened).toEqual(["a", "a"]);
    expect(screen.queryByRole("button", { name: "Edit a" })).toBeNull();
  });
});

describe("LostNotice", () => {
  it("names the key and who won, and links to the conflict and the history", async () => {
    const { client } = await live([{ key: "plan", ts: T2, value: "theirs" }]);
    const winner = client.get("plan")!;
    const conflicts: unknown[] = [];
    const histories: string[] = [];
    const dismiss = vi.fn();
    render(
      <LostNotice
        lost={[{ write: { key: "plan", ts: T1 }, winner }]}
        onOpenConflicts={(write) => conflicts.push(write)}
        onOpenHistory={(key) => histories.push(key)}
        onDismiss={dismiss}
      />,
    );
    const notice = screen.getByRole("alert");
    expect(notice.textContent).toMatch(/^Your change to plan was overridden: it was changed by tui-9f8e7d6c at /);
    await userEvent.click(within(notice).getByRole("button", { name: "See the conflict" }));
    await userEvent.click(within(notice).getByRole("button", { name: "History of plan" }));
    await userEvent.click(within(notice).getByRole("button", { name: "Dismiss" }));
    expect(conflicts).toEqual([{ key: "plan", ts: T1 }]);
    expect(histories).toEqual(["plan"]);
    expect(dismiss).toHaveBeenCalledOnce();
  });
});
