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
 *   writes, which are merged back on top.
 * - **Pending writes.** Each local write takes a timestamp from the HLC, is
 *   applied locally at once and kept, with its original timestamp, until the
 *   server acknowledges it: only the latest unacknowledged write of a key is
 *   kept (an older one would lose to it anyway). They are sent as soon as the
 *   connection is live, and all sent again after every reconnect. A pending
 *   write is also settled when the handshake or a broadcast shows that the
 *   server has it (its ack was lost with the connection) or holds a newer
 *   entry for its key (the write lost).
 * - **Refusals.** `rate_limited`, `clock_skew` and `internal` send the
 *   message again after a pause; `forbidden` keeps the writes (a read-write
 *   connection may deliver them later); an error naming one entry drops that
 *   entry and sends the others again; `too_large` for a message of several
 *   entries halves the batch size (the server has a lower `max_ops`); any
 *   other refusal drops the writes and asks for a snapshot, which undoes them
 *   locally.
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

/** Where a change came from: this replica, another client's broadcast, or the handshake. */
export type ChangeSource = "local" | "remote" | "sync";

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
  /** The handshake completed. */
  | { readonly type: "synced"; readonly full: boolean }
  /**
   * The server answered with an error. `fatal`: the handshake was refused and
   * reconnecting with the same settings will not help (`unauthorized`, …).
   */
  | { readonly type: "error"; readonly code: string; readonly message: string; readonly fatal: boolean }
  /** Pending writes were refused for now: call `resend()` after `delayMs`. */
  | { readonly type: "retry"; readonly delayMs: number }
  /** The local state may hold a write the server refused: reconnect, and a snapshot will set it right. */
  | { readonly type: "resync" };

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

/** Refusals for now: the same message may be accepted later. */
const RETRYABLE = new Set(["rate_limited", "clock_skew", "internal"]);
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
  /** The snapshot being received (full handshakes only). */
  readonly snapshot: LwwMap | null;
}

export class Replica {
  readonly doc: string;
  readonly node: string;
  readonly limits: Limits;
  readonly clock: Hlc;
  token: string | null;

  private map = new LwwMap();
  /** The latest unacknowledged local write of each key. */
  private readonly pending = new Map<string, Entry>();
  /** Messages sent on this connection and not answered yet: id → entries. */
  private readonly inflight = new Map<number, Entry[]>();
  /** `key \0 ts` of every entry in flight. */
  private readonly inflightEntries = new Set<string>();
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
    for (const raw of options.pending ?? []) {
      const entry = this.readStored(raw);
      if (entry === null) continue;
      this.map.merge(entry);
      const current = this.pending.get(entry.key);
      if (current === undefined || current.ts < entry.ts) this.pending.set(entry.key, entry);
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

  /** Frames to send, in order; the outbox is emptied. */
  takeOutgoing(): string[] {
    const frames = this.outbox;
    this.outbox = [];
    return frames;
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

  /** Forget the resume point, so the next handshake is a snapshot. */
  forgetSince(): void {
    this.sinceValue = null;
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
        this.clock.observeServerTime(frame.time, sentAt);
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

  /** Send the pending writes that are not in flight (after a refusal for now). */
  resend(): void {
    if (this.phaseValue !== "live" || this.readonlyValue === true) return;
    const waiting = [...this.pending.values()].filter((entry) => !this.inflightEntries.has(inflightKey(entry)));
    let batch: Entry[] = [];
    let bytes = 0;
    for (const entry of waiting) {
      const size = utf8Length(JSON.stringify(entry.toWire()));
      if (batch.length > 0 && (batch.length >= this.batchLimit || bytes + size > MESSAGE_BUDGET)) {
        this.send(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += size + 1;
    }
    if (batch.length > 0) this.send(batch);
  }

  /** Drop every unacknowledged write (they cannot be delivered, e.g. on a read-only connection). */
  discardPending(): void {
    if (this.pending.size === 0) return;
    this.pending.clear();
    this.sinceValue = null; // the local state holds the discarded writes: take a snapshot next time
    this.emit({ type: "pending" });
    this.emit({ type: "state" });
    this.emit({ type: "resync" });
  }

  private writeTs(): string {
    if (this.readonlyValue === true) {
      throw new ProtocolError("forbidden", "this connection is read-only");
    }
    return this.clock.now();
  }

  private write(entry: Entry): Entry {
    const previous = this.map.get(entry.key);
    this.map.merge(entry); // always wins: its ts is greater than any this replica has seen
    this.pending.set(entry.key, entry);
    if (this.phaseValue === "live") this.send([entry]);
    this.emit({ type: "changes", changes: [{ key: entry.key, entry, previous, source: "local", origin: this.node }] });
    this.emit({ type: "pending" });
    this.emit({ type: "state" });
    return entry;
  }

  private send(entries: Entry[]): void {
    const id = this.nextId++;
    this.inflight.set(id, entries);
    for (const entry of entries) this.inflightEntries.add(inflightKey(entry));
    this.outbox.push(opsFrame(id, entries.map((entry) => entry.toWire())));
  }

  private settle(id: number): Entry[] {
    const entries = this.inflight.get(id) ?? [];
    this.inflight.delete(id);
    for (const entry of entries) this.inflightEntries.delete(inflightKey(entry));
    return entries;
  }

  // -- frames ----------------------------------------------------------------------

  private onWelcome(frame: WelcomeFrame): void {
    if (this.phaseValue !== "hello") {
      this.protocolSlip("a welcome outside the handshake");
      return;
    }
    this.clock.observeServerTime(frame.time);
    this.phaseValue = "handshake";
    this.handshake = { full: frame.full, epoch: frame.epoch, snapshot: frame.full ? new LwwMap() : null };
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
    const changes: Change[] = [];
    for (const item of raw) {
      const entry = this.readReceived(item);
      if (entry === null) continue;
      if (handshake.snapshot !== null) {
        handshake.snapshot.merge(entry);
      } else {
        const previous = this.map.get(entry.key);
        if (this.map.merge(entry)) changes.push({ key: entry.key, entry, previous, source: "sync", origin: null });
        this.settleBy(entry);
      }
    }
    if (changes.length > 0) this.emit({ type: "changes", changes });
  }

  private onSynced(seq: number): void {
    const handshake = this.handshake;
    if (this.phaseValue !== "handshake" || handshake === null) {
      this.protocolSlip("synced outside the handshake");
      return;
    }
    if (handshake.snapshot !== null) this.replaceWith(handshake.snapshot);
    this.handshake = null;
    this.sinceValue = { epoch: handshake.epoch, seq };
    this.phaseValue = "live";
    this.emit({ type: "synced", full: handshake.full });
    this.resend();
    this.emit({ type: "state" });
  }

  /** Take a snapshot as the new state, keeping this replica's unacknowledged writes. */
  private replaceWith(snapshot: LwwMap): void {
    for (const entry of snapshot.entries()) this.settleBy(entry);
    for (const entry of this.pending.values()) snapshot.merge(entry);
    const changes: Change[] = [];
    for (const previous of this.map.entries()) {
      if (!snapshot.has(previous.key)) {
        changes.push({ key: previous.key, entry: undefined, previous, source: "sync", origin: null });
      }
    }
    for (const entry of snapshot.entries()) {
      const previous = this.map.get(entry.key);
      if (previous === undefined || !previous.sameAs(entry)) {
        changes.push({ key: entry.key, entry, previous, source: "sync", origin: null });
      }
    }
    this.map = snapshot;
    if (changes.length > 0) this.emit({ type: "changes", changes });
  }

  private onAck(frame: AckFrame): void {
    let changed = false;
    for (const entry of this.settle(frame.id)) {
      if (this.pending.get(entry.key)?.ts === entry.ts) {
        this.pending.delete(entry.key);
        changed = true;
      }
    }
    this.advance(frame.seq);
    if (changed) this.emit({ type: "pending" });
    this.emit({ type: "state" });
  }

  private onBroadcast(frame: BroadcastFrame): void {
    if (this.phaseValue !== "live") {
      this.protocolSlip("a broadcast before synced");
      return;
    }
    const changes: Change[] = [];
    for (const item of frame.ops) {
      const entry = this.readReceived(item);
      if (entry === null) continue;
      const previous = this.map.get(entry.key);
      if (this.map.merge(entry)) changes.push({ key: entry.key, entry, previous, source: "remote", origin: frame.origin });
      this.settleBy(entry);
    }
    this.advance(frame.seq);
    if (changes.length > 0) this.emit({ type: "changes", changes });
    this.emit({ type: "state" });
  }

  private onError(frame: ErrorFrame): void {
    const batch = frame.id !== null && this.inflight.has(frame.id) ? this.settle(frame.id) : null;
    if (batch === null) {
      // Not about one of our writes: a refused handshake is fatal, anything else is reported.
      const fatal = this.phaseValue === "hello";
      this.emit({ type: "error", code: frame.code, message: frame.message, fatal });
      return;
    }
    this.emit({ type: "error", code: frame.code, message: frame.message, fatal: false });
    const index = frame.entry;
    if (!RETRYABLE.has(frame.code) && index !== null && index < batch.length && batch.length > 1) {
      // One entry is at fault: drop it, send the others again.
      this.drop([batch[index]!]);
      this.resend();
    } else if (frame.code === "too_large" && batch.length > 1) {
      // Too many entries for this server: it has a lower max_ops than assumed.
      this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
      this.resend();
    } else if (RETRYABLE.has(frame.code)) {
      this.emit({ type: "retry", delayMs: RETRY_PAUSE_MS });
    } else if (frame.code === "forbidden") {
      this.readonlyValue = true; // kept: a read-write connection may deliver them later
      this.emit({ type: "state" });
    } else {
      this.drop(batch);
    }
  }

  /** Give up writes the server will never take; a snapshot will undo them locally. */
  private drop(entries: readonly Entry[]): void {
    let dropped = false;
    for (const entry of entries) {
      if (this.pending.get(entry.key)?.ts === entry.ts) {
        this.pending.delete(entry.key);
        dropped = true;
      }
    }
    this.sinceValue = null;
    if (dropped) this.emit({ type: "pending" });
    this.emit({ type: "state" });
    this.emit({ type: "resync" });
  }

  /** A pending write is settled once the server is seen to hold it, or something newer for its key. */
  private settleBy(received: Entry): void {
    const pending = this.pending.get(received.key);
    if (pending !== undefined && received.ts >= pending.ts) {
      this.pending.delete(received.key);
      this.emit({ type: "pending" });
    }
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
    this.inflightEntries.clear();
    this.pings.clear();
    this.peerSet = new Set();
    this.outbox = [];
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

function inflightKey(entry: Entry): string {
  return `${entry.key}\u0000${entry.ts}`;
}
