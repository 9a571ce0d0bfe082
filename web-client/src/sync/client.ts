/**
 * The sync client: a {@link Replica} over a WebSocket, with reconnection,
 * keep-alive and persistence — the I/O around the sans-I/O core, like
 * `syncd.client` in Python.
 *
 * - **Servers**: one URL, or several — the nodes of a cluster, each holding
 *   the whole document. A connection that fails or is lost moves on to the
 *   next URL at once; only after a whole round of URLs failed does it wait,
 *   with exponential backoff and jitter (0.5 s doubling to 10 s, each delay
 *   drawn in its upper half; see `rotation.ts`). A completed handshake resets
 *   the backoff; the browser coming back online retries at once. Moving to
 *   another node brings a snapshot (each node has its own epoch), merged as
 *   the contract says; the pending writes are sent again there.
 * - **Keep-alive**: a `ping` at once when live (its `pong` refines the clock's
 *   offset to the server's), then every 15 s; a connection that has been
 *   silent for 40 s, or whose connect and handshake have not finished in 10 s,
 *   is closed, and the next URL tried.
 * - **Persistence**: pending writes are saved synchronously whenever they
 *   change, with the clock's high-water mark (so a reload never stamps a
 *   write below an earlier one, see `storage.ts`); the state and resume point
 *   at most once a second while they change, and when the page is hidden or
 *   the client stops.
 * - A refused handshake that every node would refuse alike (`unauthorized`,
 *   `unsupported_version`, a malformed `hello`) stops the reconnecting until
 *   the caller changes something (`setToken`, `reconnect`); another refusal
 *   (`internal`, …) moves on to the next URL like a lost connection.
 * - A write the server refuses for good is rolled back by the replica; the
 *   view's `refused` says which keys and why, for the UI to show. A pending
 *   write that lost to a newer entry is in the view's `lost`, until dismissed.
 * - **History** (`history`, `conflicts`): as the Python `Client.history`, a
 *   request made while not live waits for the connection to be live (at most
 *   `requestTimeoutMs`), is sent once, and its answer waits as long again;
 *   a connection that closes first fails it (`RequestError`, see
 *   `requests.ts`), and the caller asks again.
 */

import type { JsonValue } from "./canonical";
import type { Entry } from "./entry";
import { RequestError } from "./errors";
import { type Conflict, type Since, type Version, conflictsFrame, historyFrame } from "./frames";
import { type Change, Replica, type ReplicaEvent, type ReplicaState, type Write } from "./replica";
import { type Answers, RequestTable } from "./requests";
import { type Backoff, ServerRotation } from "./rotation";
import { MemoryPersistence, type Persistence } from "./storage";

/**
 * Handshake refusals another node of the cluster would answer alike: the token,
 * the protocol version or the `hello` itself is at fault, not the node.
 */
const REFUSED_EVERYWHERE: ReadonlySet<string> = new Set([
  "unauthorized",
  "unsupported_version",
  "bad_message",
  "bad_json",
  "not_ready",
]);

/** The connection as a person would describe it. */
export type Status =
  | "loading" // reading the persisted replica
  | "connecting" // socket opening, or hello sent
  | "syncing" // receiving the document
  | "live"
  | "offline" // no connection; a retry is scheduled
  | "unauthorized" // the server wants a (different) token
  | "failed" // the server refused the handshake for another reason
  | "stopped";

/** What the UI shows of a client; a new object whenever anything in it changes. */
export interface ClientView {
  readonly status: Status;
  readonly doc: string;
  readonly node: string;
  /** The URL connected to, or being tried. */
  readonly url: string;
  /** Every URL the client may use, in the order it tries them. */
  readonly urls: readonly string[];
  /** The server node of this connection (`welcome.node`), once its handshake began. */
  readonly serverNode: string | null;
  /** The cluster that node belongs to (`welcome.cluster`), when it is one of several. */
  readonly cluster: string | null;
  readonly peers: readonly string[];
  readonly pending: number;
  readonly readonly: boolean;
  readonly since: Since | null;
  /** The last error the server or the storage reported, if any. */
  readonly error: { readonly code: string; readonly message: string } | null;
  /** The last writes the server refused for good (rolled back), until dismissed. */
  readonly refused: Refusal | null;
  /** This tab's pending writes that lost to a newer entry of their key, oldest first (the last 20), until dismissed. */
  readonly lost: readonly LostWrite[];
  /** When the next connection attempt is due (ms since the epoch), while offline. */
  readonly retryAt: number | null;
  /** Bumped on every change of state or entries. */
  readonly version: number;
}

/** Writes the server refused for good: their keys were set back to the server's entries. */
export interface Refusal {
  readonly code: string;
  readonly message: string;
  readonly keys: readonly string[];
}

/** A pending write that lost: the server already held a newer entry for its key. */
export interface LostWrite {
  readonly write: Write;
  /** The entry that beat it. */
  readonly winner: Entry;
}

/** One page of a key's history, newest first. */
export interface HistoryPage {
  readonly key: string;
  readonly versions: readonly Version[];
  /** The `before` of the next (older) page; null on the last. */
  readonly next: string | null;
}

/** One page of the document's overridden writes, newest first. */
export interface ConflictsPage {
  readonly conflicts: readonly Conflict[];
  /** The `before` of the next (older) page; null on the last. */
  readonly next: number | null;
}

/** The part of the DOM WebSocket this client uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface ClientOptions {
  /**
   * The server's WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`, or the URLs of
   * several nodes of one cluster, tried in this order.
   */
  readonly url: string | readonly string[];
  readonly doc: string;
  readonly node: string;
  readonly token?: string | null;
  readonly persistence?: Persistence;
  readonly socket?: (url: string) => SocketLike;
  readonly timers?: Timers;
  readonly clock?: () => number;
  readonly random?: () => number;
  readonly backoff?: Backoff;
  readonly pingIntervalMs?: number;
  readonly silenceLimitMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** How long after a change the state is saved. */
  readonly saveDelayMs?: number;
  /** How long a history request waits for a live connection, and then for its answer. */
  readonly requestTimeoutMs?: number;
}

/** The most lost writes the view keeps (the oldest go first). */
const MAX_LOST = 20;

const OPEN = 1;

const browserTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  setInterval: (callback, ms) => globalThis.setInterval(callback, ms),
  clearInterval: (handle) => globalThis.clearInterval(handle as ReturnType<typeof setInterval>),
};

export class SyncClient {
  readonly doc: string;
  readonly node: string;
  /** Every URL the client may use, in the order it tries them. */
  readonly urls: readonly string[];

  private replica: Replica | null = null;
  private socket: SocketLike | null = null;
  private statusValue: Status = "loading";
  private errorValue: ClientView["error"] = null;
  private refusedValue: Refusal | null = null;
  private lostValue: readonly LostWrite[] = [];
  private retryAt: number | null = null;
  private stopped = false;
  private halted = false;
  private token: string | null;
  private version = 0;
  private viewValue: ClientView;
  private lastHeard = 0;
  /** The resume point of the last state saved (as text), to save again when it moves. */
  private savedSince = "";

  private retryTimer: unknown = null;
  private handshakeTimer: unknown = null;
  private pingTimer: unknown = null;
  private resendTimer: unknown = null;
  private saveTimer: unknown = null;

  private readonly persistence: Persistence;
  private readonly openSocket: (url: string) => SocketLike;
  private readonly timers: Timers;
  private readonly clock: () => number;
  private readonly rotation: ServerRotation;
  private readonly pingIntervalMs: number;
  private readonly silenceLimitMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly saveDelayMs: number;
  private readonly requestTimeoutMs: number;
  private readonly requests: RequestTable;
  private readonly viewListeners = new Set<() => void>();
  private readonly changeListeners = new Set<(changes: readonly Change[]) => void>();
  /** The browser is online again: if waiting to retry, retry now. */
  private readonly onOnline = (): void => {
    if (this.socket === null) this.reconnect();
  };
  private readonly onPageHide = (): void => this.saveState();

  constructor(options: ClientOptions) {
    this.doc = options.doc;
    this.node = options.node;
    this.rotation = new ServerRotation(
      typeof options.url === "string" ? [options.url] : options.url,
      options.backoff ?? { initialMs: 500, maxMs: 10_000 },
      options.random ?? Math.random,
    );
    this.urls = this.rotation.urls;
    this.token = options.token ?? null;
    this.persistence = options.persistence ?? new MemoryPersistence();
    this.openSocket = options.socket ?? ((url) => new WebSocket(url));
    this.timers = options.timers ?? browserTimers;
    this.clock = options.clock ?? Date.now;
    this.pingIntervalMs = options.pingIntervalMs ?? 15_000;
    this.silenceLimitMs = options.silenceLimitMs ?? 40_000;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.saveDelayMs = options.saveDelayMs ?? 1000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.requests = new RequestTable(this.timers);
    this.viewValue = this.buildView();
  }

  /** The URL connected to, or being tried (or to be tried next, while offline). */
  get url(): string {
    return this.rotation.current;
  }

  /** Load the persisted replica, then connect. */
  async start(): Promise<void> {
    const pending = this.persistence.loadPending(this.node, this.doc);
    const clockMark = this.persistence.loadClock(this.node, this.doc);
    let state: ReplicaState | null;
    try {
      state = await this.persistence.loadState(this.node, this.doc);
    } catch {
      state = null; // no cache: the handshake brings a snapshot
    }
    if (this.stopped) return;
    this.replica = new Replica({
      doc: this.doc,
      node: this.node,
      token: this.token,
      clock: this.clock,
      state,
      pending,
      clockMark,
    });
    this.replica.on((event) => this.onReplicaEvent(event));
    globalThis.addEventListener?.("online", this.onOnline);
    globalThis.addEventListener?.("pagehide", this.onPageHide);
    this.connect();
  }

  /** Close the connection for good and save the state. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    globalThis.removeEventListener?.("online", this.onOnline);
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      detach(socket);
      socket.close(1000, "bye");
    }
    this.replica?.disconnect();
    this.requests.failAll(new RequestError("unavailable", "the client was stopped"));
    this.saveState();
    this.setStatus("stopped");
  }

  // -- what the UI reads ----------------------------------------------------------

  /** The current view; the same object until something changes (for `useSyncExternalStore`). */
  view(): ClientView {
    return this.viewValue;
  }

  /** Subscribe to view changes. */
  subscribe(listener: () => void): () => void {
    this.viewListeners.add(listener);
    return () => this.viewListeners.delete(listener);
  }

  /** Subscribe to changes of keys (to highlight them). */
  onChanges(listener: (changes: readonly Change[]) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Every live entry. */
  entries(): Entry[] {
    return this.replica === null ? [] : [...this.replica.entries()];
  }

  get(key: string): Entry | undefined {
    return this.replica?.get(key);
  }

  isPending(key: string): boolean {
    return this.replica?.isPending(key) ?? false;
  }

  // -- what the UI does --------------------------------------------------------------

  set(key: string, value: JsonValue): Entry {
    const entry = this.ready().set(key, value);
    this.flush();
    return entry;
  }

  remove(key: string): Entry {
    const entry = this.ready().remove(key);
    this.flush();
    return entry;
  }

  // -- the server's history --------------------------------------------------------

  /**
   * Up to `limit` versions of `key` (values and deletes), newest first, older
   * than the ts `before`; and the `before` of the next page. Rejects with a
   * `RequestError`. A server run with `--history-retention 0` answers every
   * page empty.
   */
  async history(key: string, page: { limit?: number; before?: string | null } = {}): Promise<HistoryPage> {
    const answer = await this.request("history", (id) => historyFrame(id, key, page));
    return { key: answer.key, versions: answer.versions, next: answer.next };
  }

  /** Up to `limit` overridden writes (of `node` only, if given), newest first, below the id `before`. */
  async conflicts(page: { node?: string | null; limit?: number; before?: number | null } = {}): Promise<ConflictsPage> {
    const answer = await this.request("conflicts", (id) => conflictsFrame(id, page));
    return { conflicts: answer.conflicts, next: answer.next };
  }

  private async request<K extends keyof Answers>(kind: K, frame: (id: number) => string): Promise<Answers[K]> {
    await this.whenLive(kind);
    const socket = this.socket;
    if (socket?.readyState !== OPEN) throw new RequestError("disconnected", `not connected: ${kind} was not sent`);
    const { id, answer } = this.requests.expect(kind, this.requestTimeoutMs);
    socket.send(frame(id));
    return answer;
  }

  /** Resolves once the connection is live; rejects after `requestTimeoutMs`, or when it cannot become live. */
  private whenLive(kind: string): Promise<void> {
    /** Null while it may still become live. */
    const hopeless = (): RequestError | null => {
      if (this.stopped) return new RequestError("unavailable", `the client was stopped: ${kind} was not sent`);
      if (this.halted) return new RequestError("unavailable", `the server refused the connection: ${kind} was not sent`);
      return null;
    };
    if (this.statusValue === "live") return Promise.resolve();
    const failure = hopeless();
    if (failure !== null) return Promise.reject(failure);
    return new Promise((resolve, reject) => {
      const finish = (error: RequestError | null): void => {
        off();
        this.timers.clearTimeout(timer);
        if (error === null) resolve();
        else reject(error);
      };
      const off = this.subscribe(() => {
        if (this.statusValue === "live") finish(null);
        else {
          const error = hopeless();
          if (error !== null) finish(error);
        }
      });
      const timer = this.timers.setTimeout(() => {
        finish(new RequestError("timeout", `not connected within ${this.requestTimeoutMs / 1000} s: ${kind} was not sent`));
      }, this.requestTimeoutMs);
    });
  }

  /** Use another token and connect again. */
  setToken(token: string | null): void {
    this.token = token;
    if (this.replica !== null) this.replica.token = token;
    this.reconnect();
  }

  /** Forget the last error (the UI has shown it). */
  clearError(): void {
    if (this.errorValue === null) return;
    this.errorValue = null;
    this.refresh();
  }

  /** Forget the lost writes (the UI has shown them). */
  clearLost(): void {
    if (this.lostValue.length === 0) return;
    this.lostValue = [];
    this.refresh();
  }

  /** Forget the last refusal (the UI has shown it). */
  clearRefused(): void {
    if (this.refusedValue === null) return;
    this.refusedValue = null;
    this.refresh();
  }

  /** Drop the writes that could not be delivered (rolled back to the server's entries). */
  discardPending(): void {
    this.replica?.discardPending();
  }

  /** Connect now (after a refusal, or when the network is back), skipping the backoff. */
  reconnect(): void {
    if (this.stopped || this.replica === null) return;
    this.halted = false;
    this.rotation.reset();
    if (this.socket !== null) {
      this.socket.close(1000, "reconnecting"); // onclose schedules the next attempt
      return;
    }
    this.connect();
  }

  // -- the connection ------------------------------------------------------------------

  private ready(): Replica {
    if (this.replica === null) throw new Error("the client is still loading");
    return this.replica;
  }

  private connect(): void {
    if (this.stopped || this.halted || this.socket !== null) return;
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.setStatus("connecting");
    let socket: SocketLike;
    try {
      socket = this.openSocket(this.url);
    } catch (error) {
      this.errorValue = { code: "connection", message: (error as Error).message };
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    // From the connect on, not from the open: a node that does not answer at all is given up too.
    this.handshakeTimer = this.timers.setTimeout(() => {
      if (this.socket === socket && this.replica?.phase !== "live") socket.close(4000, "handshake timed out");
    }, this.handshakeTimeoutMs);
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.lastHeard = this.clock();
      this.replica?.connect();
      this.flush();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket !== socket || this.replica === null) return;
      this.lastHeard = this.clock();
      if (typeof event.data !== "string") return; // the protocol has only text frames
      if (this.requests.receive(event.data)) return; // the answer to a history request
      this.replica.receive(event.data);
      this.flush();
    };
    socket.onerror = () => {
      // A close event follows; it is what schedules the next attempt.
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      detach(socket);
      this.clearConnectionTimers();
      this.replica?.disconnect();
      this.requests.failAll(new RequestError("disconnected", "the connection closed before the answer came"));
      if (event.code === 1009) {
        this.errorValue = { code: "too_large", message: "the server closed the connection: a message was too large" };
      }
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    if (this.halted) {
      this.refresh();
      return;
    }
    const delay = this.rotation.failed();
    if (delay === 0) {
      this.connect(); // the next node, at once
      return;
    }
    this.retryAt = this.clock() + delay;
    this.setStatus("offline");
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** Send what the replica has queued. */
  private flush(): void {
    if (this.replica === null) return;
    const frames = this.replica.takeOutgoing();
    const socket = this.socket;
    if (socket?.readyState !== OPEN) return; // the replica resends on the next connection
    for (const frame of frames) socket.send(frame);
  }

  private onReplicaEvent(event: ReplicaEvent): void {
    switch (event.type) {
      case "changes":
        for (const listener of this.changeListeners) listener(event.changes);
        this.scheduleSave();
        this.refresh();
        return;
      case "pending":
        this.savePending();
        return;
      case "state":
        if (sinceText(this.replica?.since) !== this.savedSince) this.scheduleSave();
        this.syncStatus();
        return;
      case "synced":
        this.rotation.reset();
        this.errorValue = null; // whatever went wrong before, this connection works
        this.timers.clearTimeout(this.handshakeTimer);
        this.startPinging();
        this.scheduleSave();
        return;
      case "error":
        this.errorValue = { code: event.code, message: event.message };
        if (event.fatal && REFUSED_EVERYWHERE.has(event.code)) {
          this.halted = true; // reconnecting as we are would be refused again, by any node
          this.setStatus(event.code === "unauthorized" ? "unauthorized" : "failed");
        } else if (event.fatal) {
          this.socket?.close(1000, "refused"); // this node refused; onclose tries the next one
          this.refresh();
        } else {
          this.refresh();
        }
        return;
      case "rejected":
        if (event.retryAfterMs === null) {
          this.refusedValue = { code: event.code, message: event.message, keys: event.writes.map((write) => write.key) };
          if (event.code === "forbidden") this.errorValue = { code: event.code, message: event.message };
          this.refresh();
        } else if (event.retryAfterMs > 0) {
          // The replica holds its writes back until then; flush once the pause is over.
          this.timers.clearTimeout(this.resendTimer);
          this.resendTimer = this.timers.setTimeout(() => {
            this.resendTimer = null;
            this.flush();
          }, event.retryAfterMs);
        }
        return;
      case "overridden":
        this.lostValue = [...this.lostValue, { write: event.write, winner: event.winner }].slice(-MAX_LOST);
        return; // the "pending" event that follows saves and shows it
      case "acked":
        return; // the "pending" and "changes" events that follow carry what to save and show
    }
  }

  /**
   * Ping now, and then every `pingIntervalMs`. The first pong measures the
   * server's clock from the middle of a round trip: the welcome's time alone
   * counts all of the handshake's delay (a page busy loading) as the clocks'
   * difference, and would stamp this tab's writes that much behind another's.
   */
  private startPinging(): void {
    this.timers.clearInterval(this.pingTimer);
    this.replica?.ping();
    this.flush();
    this.pingTimer = this.timers.setInterval(() => {
      const socket = this.socket;
      if (socket === null || this.replica === null) return;
      if (this.clock() - this.lastHeard > this.silenceLimitMs) {
        socket.close(4001, "the server went silent");
        return;
      }
      this.replica.ping();
      this.flush();
    }, this.pingIntervalMs);
  }

  // -- persistence -------------------------------------------------------------------------

  private savePending(): void {
    if (this.replica === null) return;
    try {
      this.persistence.savePending(this.node, this.doc, this.replica.pendingEntries(), this.replica.clockMark);
    } catch (error) {
      this.errorValue = { code: "storage", message: `offline writes could not be saved: ${(error as Error).message}` };
    }
    this.refresh();
  }

  private scheduleSave(): void {
    if (this.saveTimer !== null) return;
    this.saveTimer = this.timers.setTimeout(() => {
      this.saveTimer = null;
      this.saveState();
    }, this.saveDelayMs);
  }

  private saveState(): void {
    this.timers.clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (this.replica === null) return;
    this.savedSince = sinceText(this.replica.since);
    this.persistence.saveState(this.node, this.doc, this.replica.state()).catch((error: unknown) => {
      this.errorValue = { code: "storage", message: `the local copy could not be saved: ${String(error)}` };
      this.refresh();
    });
  }

  // -- the view ------------------------------------------------------------------------------

  private syncStatus(): void {
    const phase = this.replica?.phase;
    if (phase === "live") {
      this.setStatus("live");
      if (this.errorValue?.code === "connection") this.errorValue = null;
    } else if (phase === "handshake") this.setStatus("syncing");
    else if (phase === "hello") this.setStatus("connecting");
    else this.refresh();
  }

  private setStatus(status: Status): void {
    this.statusValue = status;
    this.refresh();
  }

  private refresh(): void {
    this.version++;
    this.viewValue = this.buildView();
    for (const listener of this.viewListeners) listener();
  }

  private buildView(): ClientView {
    const replica = this.replica;
    // The replica remembers the last welcome; it names this connection's node only once this connection had one.
    const connected = this.statusValue === "syncing" || this.statusValue === "live";
    return {
      status: this.statusValue,
      doc: this.doc,
      node: this.node,
      url: this.url,
      urls: this.urls,
      serverNode: connected ? (replica?.serverNode ?? null) : null,
      cluster: connected ? (replica?.serverCluster ?? null) : null,
      peers: replica === null ? [] : [...replica.peers].sort(),
      pending: replica?.pendingCount ?? 0,
      readonly: replica?.readonly === true,
      since: replica?.since ?? null,
      error: this.errorValue,
      refused: this.refusedValue,
      lost: this.lostValue,
      retryAt: this.statusValue === "offline" ? this.retryAt : null,
      version: this.version,
    };
  }

  private clearConnectionTimers(): void {
    this.timers.clearTimeout(this.handshakeTimer);
    this.timers.clearInterval(this.pingTimer);
    this.timers.clearTimeout(this.resendTimer);
    this.handshakeTimer = this.pingTimer = this.resendTimer = null;
  }

  private clearTimers(): void {
    this.clearConnectionTimers();
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}

function sinceText(since: Since | null | undefined): string {
  return since ? `${since.epoch}@${since.seq}` : "";
}

function detach(socket: SocketLike): void {
  socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
}

/** The WebSocket URL of the server that served this page: `ws` beside it (`/ws` for a page at `/`). */
export function defaultServerUrl(location: Pick<Location, "href"> = window.location): string {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.href;
}
