/**
 * The client's side of the protocol, without I/O: one document's replica and
 * the state machine of its connection (contract §4–§6).
 *
 * The transport feeds it text frames (`receive`) and tells it when a
 * connection opens (`connect`) or ends (`disconnect`); it answers with frames
 * to send (`takeOutgoing`) and events for the UI and for persistence. It never
 * touches a socket, a timer or storage, so every rule here is tested by
 * scripting frames (`test/replica.test.ts`).
 *
 * The rules it keeps:
 * - **Handshake.** `hello` carries the resume point (`since`) when it has one.
 *   A delta (`full: false`) is merged as it arrives; a snapshot (`full: true`)
 *   is collected and, at `synced`, *replaces* the local state — every key the
 *   snapshot lacks is dropped, except keys with this replica's unacknowledged
 *   writes, which are merged back on top — when it comes from the same server
 *   node as the last welcome (so a broadcast that node's crash lost is dropped).
 *   From another node of a cluster (a move) it is *merged* instead, and what it
 *   lacks or holds older is relayed to it (docs/protocol.md, "Snapshots:
 *   replace or merge").
 * - **Pending writes.** Each local write takes a timestamp from the HLC, is
 *   applied locally at once and kept, with its original timestamp, until the
 *   server acknowledges it: only the latest unacknowledged write of a key is
 *   kept (an older one would lose to it anyway). They are sent as soon as the
 *   connection is live, and all sent again after every reconnect. A pending
 *   write is also settled when the handshake or a broadcast shows that the
 *   server has it (its ack was lost with the connection) or holds a newer
 *   entry for its key (the write lost). A write that lost so is still sent
 *   (again after a reconnect, until the server answers it): it loses on the
 *   server too, which records the conflict (issue #13), whichever client
 *   reconnected first; the local state does not change.
 * - **Refusals.** `rate_limited`, `clock_skew` and `internal` send the
 *   message again after a pause of `RETRY_PAUSE_MS` (no writes go out until
 *   then); `too_large` for a message of several entries halves the batch size
 *   (the server has a lower `max_ops`) and sends again at once. Any other
 *   code (`too_large` for one entry, `bad_message`, `forbidden`, codes this
 *   client does not know) is final: the write is **rolled back** — the key
 *   shows again the server's entry, remembered while the write was pending —
 *   and a `rejected` event (with `retryAfterMs: null`) tells the user. An
 *   error naming one entry rolls back only that entry and sends the others
 *   again. `forbidden` also makes the connection read-only.
 *
 * The state machine is pinned, with the Python replica's, by the session
 * vectors in `tests/vectors/sessions.json` (`test/sessions.test.ts`).
 * - **Resume point.** The greatest `seq` seen in `synced`, an ack or a
 *   broadcast, with the welcome's `epoch`.
 * - **Clock.** `welcome.time`, `pong.time` and every received `ts` are
 *   observed, so new writes order after everything seen; the server's times
 *   also give the offset of its wall clock to ours, by which new writes are
 *   stamped (see `Hlc.observeServerTime`). `clockMark` (the greatest
 *   timestamp issued or observed) is persisted with the pending writes, and a
 *   replica made from it observes it first: it never issues a timestamp below
 *   one it issued before, even when its acknowledged writes are in no saved
 *   state and its wall clock is behind (contract §2).
 */

import { type JsonValue, canonicalize, isWellFormed, utf8Length } from "./canonical";
import { DEFAULT_LIMITS, Entry, type Limits, type WireEntry, readEntry } from "./entry";
import { ProtocolError } from "./errors";
import {
  type AckFrame,
  type BroadcastFrame,
  type ErrorFrame,
  type Since,
  type WelcomeFrame,
  helloFrame,
  opsFrame,
  parseServerFrame,
  pingFrame,
} from "./frames";
import { Hlc } from "./hlc";
import { LwwMap } from "./merge";
import { formatTimestamp } from "./timestamp";

/** Where the connection is: no connection; `hello` sent; receiving the document; live. */
export type Phase = "closed" | "hello" | "handshake" | "live";

/**
 * Where a change came from: this replica, another client's broadcast, the
 * handshake, or the rollback of a write the server refused.
 */
export type ChangeSource = "local" | "remote" | "sync" | "rollback";

/** One local write, named by its key and timestamp. */
export interface Write {
  readonly key: string;
  readonly ts: string;
}

/** One key's change. `entry` is undefined when a snapshot dropped the key. */
export interface Change {
  readonly key: string;
  readonly entry: Entry | undefined;
  readonly previous: Entry | undefined;
  readonly source: ChangeSource;
  /** The node whose broadcast carried it, for remote changes. */
  readonly origin: string | null;
}

export type ReplicaEvent =
  /** Keys changed (tombstones included). */
  | { readonly type: "changes"; readonly changes: readonly Change[] }
  /** Phase, peers, read-only flag, resume point or pending count changed. */
  | { readonly type: "state" }
  /** The set of unacknowledged writes changed: persist it. */
  | { readonly type: "pending" }
  /** The handshake completed, at the server's `seq`. */
  | { readonly type: "synced"; readonly full: boolean; readonly seq: number }
  /**
   * The server answered with an error about none of the pending writes.
   * `fatal`: the handshake was refused and reconnecting with the same
   * settings will not help (`unauthorized`, …).
   */
  | { readonly type: "error"; readonly code: string; readonly message: string; readonly fatal: boolean }
  /** Pending writes reached the server (`id` null: a handshake or broadcast showed it has them). */
  | { readonly type: "acked"; readonly id: number | null; readonly seq: number; readonly writes: readonly Write[] }
  /** A pending write lost: the server holds a newer entry for its key. */
  | { readonly type: "overridden"; readonly write: Write; readonly winner: Entry }
  /**
   * The server refused pending writes. With `retryAfterMs`, they are sent
   * again after that long (flush then); with null, they were refused for good
   * and rolled back (a `changes` event with source `rollback` follows): tell the user.
   */
  | {
      readonly type: "rejected";
      readonly code: string;
      readonly message: string;
      readonly id: number | null;
      readonly writes: readonly Write[];
      readonly retryAfterMs: number | null;
    };

/** What a replica persists besides its pending writes: its state and resume point. */
export interface ReplicaState {
  readonly since: Since | null;
  readonly entries: readonly WireEntry[];
}

export interface ReplicaOptions {
  readonly doc: string;
  readonly node: string;
  readonly token?: string | null;
  /** The physical clock, in milliseconds since the epoch (tests inject one). */
  readonly clock?: () => number;
  readonly limits?: Limits;
  /** A state persisted earlier. */
  readonly state?: ReplicaState | null;
  /** Unacknowledged writes persisted earlier. */
  readonly pending?: readonly WireEntry[];
  /** The {@link Replica.clockMark} persisted earlier: every new write is stamped above it. */
  readonly clockMark?: string | null;
}

/** Refusals for now: the same message may be accepted later. Any other code is final. */
export const RETRYABLE: ReadonlySet<string> = new Set(["rate_limited", "clock_skew", "internal"]);
/** Most `ops` messages left unanswered at once. */
export const DEFAULT_WINDOW = 8;
/** How long to wait before sending a message refused for now again. */
export const RETRY_PAUSE_MS = 1000;
/** Bytes of entries per `ops` message when sending many (well under the 1 MiB frame limit). */
const MESSAGE_BUDGET = 256 * 1024;

/** Throw `bad_message`/`too_large` when `key` cannot be a key. */
export function validateKey(key: string, limits: Limits = DEFAULT_LIMITS): void {
  if (key === "") throw new ProtocolError("bad_message", "the key must not be empty");
  if (!isWellFormed(key)) throw new ProtocolError("bad_message", "the key holds an unpaired surrogate");
  const bytes = utf8Length(key);
  if (bytes > limits.maxKeyBytes) {
    throw new ProtocolError("too_large", `the key is ${bytes} bytes, over the limit of ${limits.maxKeyBytes}`);
  }
}

/** The canonical text of `value`; throws `bad_message`/`too_large` when it cannot be a value. */
export function validateValue(value: JsonValue, limits: Limits = DEFAULT_LIMITS): string {
  const canonical = canonicalize(value);
  const bytes = utf8Length(canonical);
  if (bytes > limits.maxValueBytes) {
    throw new ProtocolError("too_large", `the value is ${bytes} bytes, over the limit of ${limits.maxValueBytes}`);
  }
  return canonical;
}

interface Handshake {
  readonly full: boolean;
  readonly epoch: string;
  /** The welcome's seq: the head that the handshake's entries bring the replica to. */
  readonly seq: number;
  /** The snapshot being received (full handshakes only). */
  readonly snapshot: LwwMap | null;
  /** The snapshot comes from another node than the last welcome's: merge it, do not replace. */
  readonly moved: boolean;
}

export class Replica {
  readonly doc: string;
  readonly node: string;
  readonly limits: Limits;
  readonly clock: Hlc;
  token: string | null;

  private map = new LwwMap();
  /** The latest unacknowledged local write of each key, in write order. */
  private readonly pending = new Map<string, Entry>();
  /**
   * Writes an entry from the server beat before the server answered them, by ts: no
   * longer pending, but sent until answered, so that the server records the conflict.
   */
  private readonly lost = new Map<string, Entry>();
  /** Writes not sent on this connection yet, by ts, in write order (lost ones first). */
  private unsent = new Map<string, Entry>();
  /** For each key with a pending write: the server's entry as last seen (null: none), to roll back to. */
  private readonly confirmed = new Map<string, Entry | null>();
  /** Messages sent on this connection and not answered yet: id → entries. */
  private readonly inflight = new Map<number, Entry[]>();
  /** Physical time before which no writes are sent (a retryable refusal's pause). */
  private resumeAt = 0;
  private nextId = 1;
  /** Most entries per `ops` message: the server's `max_ops`, as far as known. */
  private batchLimit: number;
  /** Local send time of each ping in flight, by id. */
  private readonly pings = new Map<number, number>();
  private readonly physical: () => number;
  private phaseValue: Phase = "closed";
  private handshake: Handshake | null = null;
  private sinceValue: Since | null;
  private readonlyValue: boolean | null = null;
  private peerSet = new Set<string>();
  private serverNodeValue: string | null = null;
  private serverClusterValue: string | null = null;
  private outbox: string[] = [];
  private readonly listeners = new Set<(event: ReplicaEvent) => void>();

  constructor(options: ReplicaOptions) {
    this.doc = options.doc;
    this.node = options.node;
    this.token = options.token ?? null;
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.physical = options.clock ?? Date.now;
    this.clock = new Hlc(options.node, this.physical);
    // Before anything else: the mark may be above every entry stored (invalid text is ignored).
    const mark = options.clockMark ?? null;
    if (mark !== null) this.clock.observe(mark);
    this.batchLimit = this.limits.maxOps;
    this.sinceValue = options.state?.since ?? null;
    for (const raw of options.state?.entries ?? []) {
      const entry = this.readStored(raw);
      if (entry !== null) this.map.merge(entry);
    }
    const stored = (options.pending ?? []).map((raw) => this.readStored(raw)).filter((e) => e !== null);
    for (const entry of stored.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0))) {
      this.remember(entry.key);
      this.map.merge(entry);
      // A saved state may already hold something newer for the key.
      if (this.map.get(entry.key)?.ts === entry.ts) this.queue(entry);
      else if (!this.pending.has(entry.key)) this.confirmed.delete(entry.key);
    }
  }

  // -- reading -----------------------------------------------------------------

  get phase(): Phase {
    return this.phaseValue;
  }

  /** Whether the server made this connection read-only (null before the first welcome). */
  get readonly(): boolean | null {
    return this.readonlyValue;
  }

  /** The other clients' node ids on this document. */
  get peers(): ReadonlySet<string> {
    return this.peerSet;
  }

  get since(): Since | null {
    return this.sinceValue;
  }

  get serverNode(): string | null {
    return this.serverNodeValue;
  }

  /** The cluster of the last welcome's node, when it is one of several (`welcome.cluster`). */
  get serverCluster(): string | null {
    return this.serverClusterValue;
  }

  /** Number of keys with an unacknowledged write. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Whether `key` has an unacknowledged write. */
  isPending(key: string): boolean {
    return this.pending.has(key);
  }

  /** The live value's entry of `key`, or undefined. */
  get(key: string): Entry | undefined {
    return this.map.live(key);
  }

  /** Every live entry. */
  *entries(): IterableIterator<Entry> {
    for (const entry of this.map.entries()) if (!entry.deleted) yield entry;
  }

  /** Every entry, tombstones included. */
  allEntries(): IterableIterator<Entry> {
    return this.map.entries();
  }

  /** The state to persist. */
  state(): ReplicaState {
    return { since: this.sinceValue, entries: Array.from(this.map.entries(), (entry) => entry.toWire()) };
  }

  /** The unacknowledged writes to persist. */
  pendingEntries(): WireEntry[] {
    return Array.from(this.pending.values(), (entry) => entry.toWire());
  }

  /**
   * The clock's high-water mark to persist with the pending writes: the
   * greatest timestamp issued or observed, as a timestamp of this node (null
   * before any). Give it back as `clockMark` to keep the clock monotonic
   * across reloads.
   */
  get clockMark(): string | null {
    const { wall, counter } = this.clock.state;
    if (wall === 0 && counter === 0) return null;
    return formatTimestamp({ wall, counter, node: this.node });
  }

  /**
   * Frames to send, in order: the `hello` and pings asked for, then `ops`
   * messages for the pending writes not sent on this connection yet — only
   * once live, not read-only, not paused, with at most `window` unanswered.
   */
  takeOutgoing(window: number = DEFAULT_WINDOW): string[] {
    const frames = this.outbox;
    this.outbox = [];
    if (this.phaseValue !== "live" || this.readonlyValue === true || this.resumeInMs() > 0) return frames;
    while (this.unsent.size > 0 && this.inflight.size < window) {
      const batch: Entry[] = [];
      let bytes = 0;
      for (const entry of this.unsent.values()) {
        const size = utf8Length(JSON.stringify(entry.toWire())) + 1;
        if (batch.length > 0 && (batch.length >= this.batchLimit || bytes + size > MESSAGE_BUDGET)) break;
        batch.push(entry);
        bytes += size;
      }
      for (const entry of batch) this.unsent.delete(entry.ts);
      const id = this.nextId++;
      this.inflight.set(id, batch);
      frames.push(opsFrame(id, batch.map((entry) => entry.toWire())));
    }
    return frames;
  }

  /** Milliseconds until writes may be sent again after a retryable refusal (0: now). */
  resumeInMs(): number {
    return Math.max(this.resumeAt - this.physical(), 0);
  }

  on(listener: (event: ReplicaEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // -- the connection ------------------------------------------------------------

  /** A connection opened: say hello. */
  connect(): void {
    this.resetConnection();
    this.phaseValue = "hello";
    this.outbox.push(helloFrame({ doc: this.doc, node: this.node, token: this.token, since: this.sinceValue }));
    this.emit({ type: "state" });
  }

  /** The connection ended: whatever was in flight is still pending, and will be sent again. */
  disconnect(): void {
    if (this.phaseValue === "closed") return;
    this.resetConnection();
    this.emit({ type: "state" });
  }

  /** A ping, to measure the server's clock and keep the connection awake. */
  ping(): void {
    if (this.phaseValue === "closed") return;
    const id = this.nextId++;
    this.pings.set(id, this.physical());
    this.outbox.push(pingFrame(id));
  }

  /** Handle one text frame from the server. */
  receive(text: string): void {
    let frame;
    try {
      frame = parseServerFrame(text);
    } catch (error) {
      this.emit({ type: "error", code: "bad_message", message: `unreadable frame from the server: ${(error as Error).message}`, fatal: false });
      return;
    }
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(frame);
      case "entries":
        return this.onEntries(frame.entries);
      case "synced":
        return this.onSynced(frame.seq);
      case "ack":
        return this.onAck(frame);
      case "ops":
        return this.onBroadcast(frame);
      case "presence": {
        for (const node of frame.joined) if (node !== this.node) this.peerSet.add(node);
        for (const node of frame.left) this.peerSet.delete(node);
        this.emit({ type: "state" });
        return;
      }
      case "pong": {
        const sentAt = frame.id === null ? undefined : this.pings.get(frame.id);
        if (frame.id !== null) this.pings.delete(frame.id);
        // Only the answer to our own ping measures the offset (its round trip is known).
        if (sentAt === undefined) this.clock.observe(frame.time);
        else this.clock.observeServerTime(frame.time, sentAt);
        return;
      }
      case "error":
        return this.onError(frame);
      case "unknown":
        return; // a newer server's frame: ignored
    }
  }

  // -- writing ---------------------------------------------------------------------

  /** Write a value: applied here at once, delivered when the connection allows. */
  set(key: string, value: JsonValue): Entry {
    validateKey(key, this.limits);
    const canonical = validateValue(value, this.limits);
    return this.write(Entry.live(key, this.writeTs(), value, canonical));
  }

  /** Delete a key (a tombstone, so no older write can bring it back). */
  remove(key: string): Entry {
    validateKey(key, this.limits);
    return this.write(Entry.tombstone(key, this.writeTs()));
  }

  /** Write many keys; every key and value is checked before any is written. */
  update(pairs: Iterable<readonly [string, JsonValue]>): Entry[] {
    const list = [...pairs];
    for (const [key, value] of list) {
      validateKey(key, this.limits);
      validateValue(value, this.limits);
    }
    return list.map(([key, value]) => this.set(key, value));
  }

  /** Give up every unacknowledged write (e.g. undeliverable on a read-only connection): rolled back. */
  discardPending(): void {
    this.lost.clear();
    if (this.pending.size === 0) return;
    this.rollBack([...this.pending.values()]);
    this.emit({ type: "state" });
  }

  private writeTs(): string {
    if (this.readonlyValue === true) {
      throw new ProtocolError("forbidden", "this connection is read-only");
    }
    return this.clock.now();
  }

  private write(entry: Entry): Entry {
    const previous = this.map.get(entry.key);
    this.remember(entry.key);
    this.map.merge(entry); // always wins: its ts is greater than any this replica has seen
    this.queue(entry);
    this.emit({ type: "changes", changes: [{ key: entry.key, entry, previous, source: "local", origin: this.node }] });
    this.emit({ type: "pending" });
    this.emit({ type: "state" });
    return entry;
  }

  /** Keep the key's server-confirmed entry before its first pending write. */
  private remember(key: string): void {
    if (!this.pending.has(key)) this.confirmed.set(key, this.map.get(key) ?? null);
  }

  /** One pending write per key, in write order: a newer write replaces the older. */
  private queue(entry: Entry): void {
    const older = this.pending.get(entry.key);
    if (older !== undefined) this.unsent.delete(older.ts);
    this.pending.delete(entry.key);
    this.pending.set(entry.key, entry);
    this.unsent.set(entry.ts, entry);
  }

  /** The write is no longer pending (unless a newer one of its key replaced it). */
  private settle(entry: Entry): Write {
    if (this.pending.get(entry.key) === entry) {
      this.pending.delete(entry.key);
      this.unsent.delete(entry.ts);
      this.confirmed.delete(entry.key);
    }
    return { key: entry.key, ts: entry.ts };
  }

  /**
   * `pending` lost to `winner`, a newer entry from the server: no longer pending,
   * but still sent (unless it is in flight) so that the server records the conflict.
   */
  private lose(pending: Entry, winner: Entry): ReplicaEvent {
    const unsent = this.unsent.has(pending.ts);
    const write = this.settle(pending);
    this.lost.set(pending.ts, pending);
    if (unsent) this.unsent.set(pending.ts, pending);
    return { type: "overridden", write, winner };
  }

  /** Every write the server has not answered is to be sent on this connection. */
  private sendAll(): void {
    this.unsent = new Map([...this.lost.values(), ...this.pending.values()].map((entry) => [entry.ts, entry]));
  }

  /** Put writes of an unanswered message back in the queue (those still current, and lost ones). */
  private requeue(batch: readonly Entry[]): void {
    for (const entry of batch) {
      const current = this.pending.get(entry.key) === entry || this.lost.has(entry.ts);
      if (current && !this.unsent.has(entry.ts)) this.unsent.set(entry.ts, entry);
    }
  }

  /** The server holds `received`, older than the key's pending write: the new rollback point. */
  private confirm(received: Entry): void {
    const confirmed = this.confirmed.get(received.key);
    // Two entries of one key with equal timestamps are one write (the ts names its node).
    if (confirmed === undefined || confirmed === null || received.ts > confirmed.ts) {
      this.confirmed.set(received.key, received);
    }
  }

  /**
   * Writes refused for good: no longer pending, and each key back to the
   * server's entry. A write a newer one of its key replaced changes nothing
   * locally: the newer write is what the key shows, and it is still pending.
   */
  private rollBack(entries: readonly Entry[]): void {
    const changes: Change[] = [];
    for (const entry of entries) {
      this.lost.delete(entry.ts); // it lost here already: nothing to roll back
      if (this.pending.get(entry.key) !== entry) continue;
      const restore = this.confirmed.get(entry.key) ?? null;
      this.settle(entry);
      const previous = this.map.get(entry.key);
      this.map.drop(entry.key);
      if (restore !== null) this.map.merge(restore);
      changes.push({ key: entry.key, entry: restore ?? undefined, previous, source: "rollback", origin: null });
    }
    if (changes.length === 0) return;
    this.emit({ type: "changes", changes });
    this.emit({ type: "pending" });
  }

  // -- frames ----------------------------------------------------------------------

  private onWelcome(frame: WelcomeFrame): void {
    if (this.phaseValue !== "hello") {
      this.protocolSlip("a welcome outside the handshake");
      return;
    }
    this.clock.observeServerTime(frame.time);
    this.phaseValue = "handshake";
    // Within one cluster only: another server alone has a history of its own.
    const moved =
      this.serverNodeValue !== null &&
      frame.node !== this.serverNodeValue &&
      frame.cluster !== null &&
      frame.cluster === this.serverClusterValue &&
      !frame.readonly;
    const snapshot = frame.full ? new LwwMap() : null;
    this.handshake = { full: frame.full, epoch: frame.epoch, seq: frame.seq, snapshot, moved };
    this.readonlyValue = frame.readonly;
    this.serverNodeValue = frame.node;
    this.serverClusterValue = frame.cluster;
    this.peerSet = new Set(frame.peers.filter((node) => node !== this.node));
    this.emit({ type: "state" });
  }

  private onEntries(raw: unknown[]): void {
    const handshake = this.handshake;
    if (this.phaseValue !== "handshake" || handshake === null) {
      this.protocolSlip("entries outside the handshake");
      return;
    }
    const entries = this.readAll(raw);
    if (handshake.snapshot !== null) {
      for (const entry of entries) handshake.snapshot.merge(entry);
      return;
    }
    this.mergeRemote(entries, "sync", null, handshake.seq);
  }

  private onSynced(seq: number): void {
    const handshake = this.handshake;
    if (this.phaseValue !== "handshake" || handshake === null) {
      this.protocolSlip("synced outside the handshake");
      return;
    }
    if (handshake.snapshot !== null) {
      if (handshake.moved) this.mergeSnapshot(handshake.snapshot, seq);
      else this.replaceWith(handshake.snapshot, seq);
    }
    this.handshake = null;
    this.sinceValue = { epoch: handshake.epoch, seq };
    this.phaseValue = "live";
    this.sendAll();
    this.emit({ type: "synced", full: handshake.full, seq });
    this.emit({ type: "state" });
  }

  /** Take a snapshot as the new state, keeping this replica's unacknowledged writes. */
  private replaceWith(snapshot: LwwMap, seq: number): void {
    const settled: Write[] = [];
    const lost: ReplicaEvent[] = [];
    for (const pending of [...this.pending.values()]) {
      const theirs = snapshot.get(pending.key);
      // The snapshot is the server's whole state: what a refusal would roll back to.
      this.confirmed.set(pending.key, theirs ?? null);
      if (theirs?.ts === pending.ts) {
        settled.push(this.settle(pending));
      } else if (theirs !== undefined && theirs.ts > pending.ts) {
        lost.push(this.lose(pending, theirs));
      } else {
        snapshot.merge(pending);
      }
    }
    const changes: Change[] = [];
    for (const entry of snapshot.entries()) {
      const previous = this.map.get(entry.key);
      if (previous?.ts !== entry.ts) {
        changes.push({ key: entry.key, entry, previous, source: "sync", origin: null });
      }
    }
    for (const previous of this.map.entries()) {
      // Dropped: the server forgot the key (a new epoch, or a purged delete).
      if (!previous.deleted && !snapshot.has(previous.key)) {
        changes.push({ key: previous.key, entry: undefined, previous, source: "sync", origin: null });
      }
    }
    this.map = snapshot;
    this.report(changes, lost, settled, seq);
  }

  /**
   * Merge another cluster node's snapshot (a move: it may lack writes seen on the
   * old node), and relay to it every entry it lacks or holds older, queued like a
   * pending write with its original ts (refused for good, it rolls back to the
   * snapshot's entry). A write broadcast before the old node crashed and lost it
   * thus reaches every node again instead of living on here alone.
   */
  private mergeSnapshot(snapshot: LwwMap, seq: number): void {
    const relay: { entry: Entry; theirs: Entry | undefined }[] = [];
    for (const entry of this.map.entries()) {
      const theirs = snapshot.get(entry.key);
      if (!this.pending.has(entry.key) && (theirs === undefined || theirs.ts < entry.ts)) relay.push({ entry, theirs });
    }
    this.mergeRemote([...snapshot.entries()], "sync", null, seq);
    for (const { entry, theirs } of relay) {
      this.confirmed.set(entry.key, theirs ?? null);
      this.queue(entry);
    }
    if (relay.length > 0) this.emit({ type: "pending" });
  }

  private onAck(frame: AckFrame): void {
    this.advance(frame.seq);
    const batch = this.inflight.get(frame.id);
    if (batch === undefined) {
      this.emit({ type: "state" }); // not ours on this connection: nothing to settle
      return;
    }
    this.inflight.delete(frame.id);
    const writes = batch.map((entry) => {
      this.lost.delete(entry.ts);
      return this.settle(entry);
    });
    this.emit({ type: "acked", id: frame.id, seq: frame.seq, writes });
    this.emit({ type: "pending" });
    this.emit({ type: "state" });
  }

  private onBroadcast(frame: BroadcastFrame): void {
    if (this.phaseValue !== "live") {
      this.protocolSlip("a broadcast before synced");
      return;
    }
    this.mergeRemote(this.readAll(frame.ops), "remote", frame.origin, frame.seq);
    this.advance(frame.seq);
    this.emit({ type: "state" });
  }

  /** Merge entries from the server; settle the pending writes they show the server has, or beat. */
  private mergeRemote(entries: readonly Entry[], source: ChangeSource, origin: string | null, seq: number): void {
    const changes: Change[] = [];
    for (const entry of entries) {
      const previous = this.map.get(entry.key);
      if (this.map.merge(entry)) changes.push({ key: entry.key, entry, previous, source, origin });
    }
    const settled: Write[] = [];
    const lost: ReplicaEvent[] = [];
    for (const entry of entries) {
      const pending = this.pending.get(entry.key);
      if (pending === undefined) continue;
      if (entry.ts === pending.ts) settled.push(this.settle(pending));
      else if (entry.ts > pending.ts) {
        lost.push(this.lose(pending, this.map.get(entry.key)!));
      } else this.confirm(entry);
    }
    this.report(changes, lost, settled, seq);
  }

  /** Changes, then lost writes, then writes the server showed it has: the order Python reports them in. */
  private report(changes: Change[], lost: ReplicaEvent[], settled: Write[], seq: number): void {
    if (changes.length > 0) this.emit({ type: "changes", changes });
    for (const event of lost) this.emit(event);
    if (settled.length > 0) this.emit({ type: "acked", id: null, seq, writes: settled });
    if (lost.length > 0 || settled.length > 0) this.emit({ type: "pending" });
  }

  private onError(frame: ErrorFrame): void {
    const batch = frame.id === null || this.phaseValue === "hello" ? undefined : this.inflight.get(frame.id);
    if (batch === undefined) {
      // Not about one of our writes: a refused handshake is fatal, anything else is reported.
      const fatal = this.phaseValue === "hello";
      this.emit({ type: "error", code: frame.code, message: frame.message, fatal });
      return;
    }
    this.inflight.delete(frame.id!);
    const { code, message } = frame;
    const id = frame.id;
    if (code === "forbidden") this.readonlyValue = true; // no more local writes on this connection
    const writes = batch.map((entry) => ({ key: entry.key, ts: entry.ts }));
    const index = frame.entry;
    if (!RETRYABLE.has(code) && index !== null && index < batch.length && batch.length > 1) {
      // One entry is at fault: roll it back, send the others again.
      const [bad] = batch.splice(index, 1);
      this.requeue(batch);
      this.emit({ type: "rejected", code, message, id, writes: [writes[index]!], retryAfterMs: null });
      this.rollBack([bad!]);
    } else if (code === "too_large" && batch.length > 1) {
      // Too many entries for this server: it has a lower max_ops than assumed.
      this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
      this.requeue(batch);
      this.emit({ type: "rejected", code, message, id, writes, retryAfterMs: 0 });
    } else if (RETRYABLE.has(code)) {
      this.requeue(batch);
      this.resumeAt = this.physical() + RETRY_PAUSE_MS;
      this.emit({ type: "rejected", code, message, id, writes, retryAfterMs: RETRY_PAUSE_MS });
    } else {
      this.emit({ type: "rejected", code, message, id, writes, retryAfterMs: null });
      this.rollBack(batch);
    }
    this.emit({ type: "state" });
  }

  // -- helpers ---------------------------------------------------------------------

  private advance(seq: number): void {
    if (this.sinceValue !== null && seq > this.sinceValue.seq) {
      this.sinceValue = { epoch: this.sinceValue.epoch, seq };
    }
  }

  private resetConnection(): void {
    this.phaseValue = "closed";
    this.handshake = null;
    this.inflight.clear();
    this.sendAll();
    this.resumeAt = 0; // a new connection has a fresh rate budget: send at once
    this.pings.clear();
    this.peerSet = new Set();
    this.outbox = [];
  }

  /** The valid entries of a frame from the server (invalid ones are reported and skipped). */
  private readAll(raw: readonly unknown[]): Entry[] {
    const entries: Entry[] = [];
    for (const item of raw) {
      const entry = this.readReceived(item);
      if (entry !== null) entries.push(entry);
    }
    return entries;
  }

  /** An entry from the server: validated (without limits: the server's may differ) and observed. */
  private readReceived(raw: unknown): Entry | null {
    try {
      const entry = readEntry(raw, null);
      this.clock.observe(entry.ts);
      return entry;
    } catch (error) {
      this.emit({ type: "error", code: "bad_message", message: `the server sent an invalid entry: ${(error as Error).message}`, fatal: false });
      return null;
    }
  }

  /** An entry from storage: validated and observed; unreadable ones are skipped. */
  private readStored(raw: unknown): Entry | null {
    try {
      const entry = readEntry(raw, null);
      this.clock.observe(entry.ts);
      return entry;
    } catch {
      return null;
    }
  }

  private protocolSlip(what: string): void {
    this.emit({ type: "error", code: "bad_message", message: `the server sent ${what}`, fatal: false });
  }

  private emit(event: ReplicaEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}

