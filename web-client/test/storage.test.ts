// Persistence: the keys and formats kept in `localStorage` (pending writes and
// the clock's high-water mark), older data included, with a storage in memory.
import { describe, expect, it } from "vitest";
import type { WireEntry } from "../src/sync/entry";
import { BrowserPersistence, MemoryPersistence, type Persistence } from "../src/sync/storage";

/** The `Storage` interface over a map. */
class MapStorage implements Storage {
  readonly items = new Map<string, string>();

  get length(): number {
    return this.items.size;
  }

  clear(): void {
    this.items.clear();
  }

  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }

  key(index: number): string | null {
    return [...this.items.keys()][index] ?? null;
  }

  removeItem(key: string): void {
    this.items.delete(key);
  }

  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

const WRITE: WireEntry = { key: "title", ts: "1764028800000-00000-web-a", value: "hi" };
const MARK = "1764028800000-00003-web-a";

describe.each([
  ["BrowserPersistence", () => new BrowserPersistence(new MapStorage(), undefined)],
  ["MemoryPersistence", () => new MemoryPersistence()],
] as [string, () => Persistence][])("%s", (_name, make) => {
  it("keeps the clock's mark once no write is pending", () => {
    const persistence = make();
    expect(persistence.loadClock("web-a", "d")).toBeNull();
    persistence.savePending("web-a", "d", [WRITE], WRITE.ts);
    expect(persistence.loadPending("web-a", "d")).toEqual([WRITE]);
    expect(persistence.loadClock("web-a", "d")).toBe(WRITE.ts);
    persistence.savePending("web-a", "d", [], MARK); // acknowledged
    expect(persistence.loadPending("web-a", "d")).toEqual([]);
    expect(persistence.loadClock("web-a", "d")).toBe(MARK);
    expect(persistence.pendingDocs("web-a")).toEqual([]); // a mark is not a pending write
    persistence.savePending("web-a", "d", []); // no mark given: the stored one stays
    expect(persistence.loadClock("web-a", "d")).toBe(MARK);
    expect(persistence.loadClock("web-a", "other")).toBeNull();
    expect(persistence.loadClock("web-b", "d")).toBeNull();
  });
});

describe("BrowserPersistence in localStorage", () => {
  it("stores the mark under its own key, beside the pending writes", () => {
    const storage = new MapStorage();
    new BrowserPersistence(storage, undefined).savePending("web-a", "d", [WRITE], MARK);
    expect(Object.fromEntries(storage.items)).toEqual({
      "syncd:v1:clock:web-a:d": MARK,
      "syncd:v1:pending:web-a:d": JSON.stringify([WRITE]),
    });
  });

  it("loads what older versions stored (pending writes, no mark)", () => {
    const storage = new MapStorage();
    storage.setItem("syncd:v1:pending:web-a:d", JSON.stringify([WRITE]));
    const persistence = new BrowserPersistence(storage, undefined);
    expect(persistence.loadPending("web-a", "d")).toEqual([WRITE]);
    expect(persistence.loadClock("web-a", "d")).toBeNull();
    expect(persistence.pendingDocs("web-a")).toEqual(["d"]);
  });

  it("ignores a stored mark that is not a timestamp", () => {
    const storage = new MapStorage();
    storage.setItem("syncd:v1:clock:web-a:d", "garbage");
    expect(new BrowserPersistence(storage, undefined).loadClock("web-a", "d")).toBeNull();
  });
});
