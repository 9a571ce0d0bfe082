/**
 * Persistence of a replica in the browser, so that offline writes survive a
 * reload and a reconnect resumes with a delta.
 *
 * - **Pending writes** go to `localStorage`, synchronously, the moment they
 *   are made: nothing a user wrote can be lost to a reload or a crash between
 *   the write and an asynchronous commit. They are small (one entry per key).
 * - **The clock's high-water mark** — the greatest timestamp the replica
 *   issued or observed, written as a timestamp of its own node — goes to
 *   `localStorage` with every save of the pending writes (just before them),
 *   and stays when no write is pending. A replica made again from storage
 *   observes it first, so it never issues a timestamp below one it issued
 *   before (contract §2): not when the state below was never saved (it is
 *   saved lazily, and a reload or crash can come first), nor when the wall
 *   clock is behind the server's and the offset learnt from `welcome` is
 *   gone. Otherwise a write made after a reload could lose to the same
 *   replica's earlier, already acknowledged write of its key.
 * - **The replica's state and resume point** go to IndexedDB, written as one
 *   record (so the two always agree), a little after they change. It is a
 *   cache: when it is missing or unreadable the client simply asks for a
 *   snapshot.
 *
 * All are keyed by node id and document: in `localStorage`,
 * `syncd:v1:pending:NODE:DOC` (a JSON array of entries, wire form) and
 * `syncd:v1:clock:NODE:DOC` (the timestamp text; absent when stored by older
 * versions, which load as before). {@link MemoryPersistence} is the same
 * contract in memory, for tests and for browsers that refuse storage.
 */

import type { WireEntry } from "./entry";
import type { ReplicaState } from "./replica";
import { isTimestamp } from "./timestamp";

export interface Persistence {
  loadPending(node: string, doc: string): WireEntry[];
  /** The clock's high-water mark saved with the pending writes (a timestamp), or null. */
  loadClock(node: string, doc: string): string | null;
  /**
   * Store the unacknowledged writes and the clock's high-water mark (a
   * timestamp; null keeps the one stored); throws when storage refuses
   * (quota, disabled).
   */
  savePending(node: string, doc: string, entries: readonly WireEntry[], clock?: string | null): void;
  /** Documents that have unacknowledged writes of `node`. */
  pendingDocs(node: string): string[];
  loadState(node: string, doc: string): Promise<ReplicaState | null>;
  saveState(node: string, doc: string, state: ReplicaState): Promise<void>;
}

const PREFIX = "syncd:v1";
const pendingKey = (node: string, doc: string): string => `${PREFIX}:pending:${node}:${doc}`;
const clockKey = (node: string, doc: string): string => `${PREFIX}:clock:${node}:${doc}`;

/** Read a JSON array of entries stored under `key`, or nothing. */
function readArray(storage: Storage, key: string): WireEntry[] {
  const text = storage.getItem(key);
  if (text === null) return [];
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? (value as WireEntry[]) : [];
  } catch {
    return [];
  }
}

/** Pending writes and the clock in `localStorage`, state in IndexedDB (database `syncd`, store `replicas`). */
export class BrowserPersistence implements Persistence {
  private readonly storage: Storage;
  private db: Promise<IDBDatabase | null> | null = null;

  constructor(storage: Storage = window.localStorage, private readonly indexedDb: IDBFactory | undefined = globalThis.indexedDB) {
    this.storage = storage;
  }

  loadPending(node: string, doc: string): WireEntry[] {
    return readArray(this.storage, pendingKey(node, doc));
  }

  loadClock(node: string, doc: string): string | null {
    const text = this.storage.getItem(clockKey(node, doc));
    return text !== null && isTimestamp(text) ? text : null;
  }

  savePending(node: string, doc: string, entries: readonly WireEntry[], clock: string | null = null): void {
    // The clock first: should the page die between the two, a mark ahead of
    // the writes is harmless, and the writes are observed on load anyway.
    if (clock !== null) this.storage.setItem(clockKey(node, doc), clock);
    const key = pendingKey(node, doc);
    if (entries.length === 0) this.storage.removeItem(key);
    else this.storage.setItem(key, JSON.stringify(entries));
  }

  pendingDocs(node: string): string[] {
    const prefix = `${PREFIX}:pending:${node}:`;
    const docs: string[] = [];
    for (let i = 0; i < this.storage.length; i++) {
      const key = this.storage.key(i);
      if (key?.startsWith(prefix)) docs.push(key.slice(prefix.length));
    }
    return docs.sort();
  }

  async loadState(node: string, doc: string): Promise<ReplicaState | null> {
    const db = await this.open();
    if (db === null) return null;
    try {
      const value: unknown = await request(db.transaction("replicas", "readonly").objectStore("replicas").get(`${node}/${doc}`));
      return isState(value) ? value : null;
    } catch {
      return null;
    }
  }

  async saveState(node: string, doc: string, state: ReplicaState): Promise<void> {
    const db = await this.open();
    if (db === null) return;
    const transaction = db.transaction("replicas", "readwrite");
    transaction.objectStore("replicas").put({ since: state.since, entries: state.entries }, `${node}/${doc}`);
    await new Promise<void>((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error ?? new Error("IndexedDB write failed"));
      transaction.onabort = () => reject(transaction.error ?? new Error("IndexedDB write aborted"));
    });
  }

  private open(): Promise<IDBDatabase | null> {
    this.db ??= new Promise((resolve) => {
      if (this.indexedDb === undefined) {
        resolve(null);
        return;
      }
      try {
        const opening = this.indexedDb.open("syncd", 1);
        opening.onupgradeneeded = () => opening.result.createObjectStore("replicas");
        opening.onsuccess = () => resolve(opening.result);
        opening.onerror = () => resolve(null); // private mode, disabled storage: run without a cache
        opening.onblocked = () => resolve(null);
      } catch {
        resolve(null);
      }
    });
    return this.db;
  }
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

function isState(value: unknown): value is ReplicaState {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  const since = record.since;
  const sinceOk =
    since === null ||
    (typeof since === "object" &&
      typeof (since as Record<string, unknown>).epoch === "string" &&
      typeof (since as Record<string, unknown>).seq === "number");
  return sinceOk && Array.isArray(record.entries);
}

/** The same contract in memory (tests; browsers that refuse storage). */
export class MemoryPersistence implements Persistence {
  readonly pending = new Map<string, WireEntry[]>();
  readonly clocks = new Map<string, string>();
  readonly states = new Map<string, ReplicaState>();

  loadPending(node: string, doc: string): WireEntry[] {
    return [...(this.pending.get(`${node}/${doc}`) ?? [])];
  }

  loadClock(node: string, doc: string): string | null {
    return this.clocks.get(`${node}/${doc}`) ?? null;
  }

  savePending(node: string, doc: string, entries: readonly WireEntry[], clock: string | null = null): void {
    if (clock !== null) this.clocks.set(`${node}/${doc}`, clock);
    if (entries.length === 0) this.pending.delete(`${node}/${doc}`);
    else this.pending.set(`${node}/${doc}`, [...entries]);
  }

  pendingDocs(node: string): string[] {
    return [...this.pending.keys()]
      .filter((key) => key.startsWith(`${node}/`))
      .map((key) => key.slice(node.length + 1))
      .sort();
  }

  loadState(node: string, doc: string): Promise<ReplicaState | null> {
    return Promise.resolve(this.states.get(`${node}/${doc}`) ?? null);
  }

  saveState(node: string, doc: string, state: ReplicaState): Promise<void> {
    this.states.set(`${node}/${doc}`, { since: state.since, entries: [...state.entries] });
    return Promise.resolve();
  }
}
