/**
 * Frames (contract §4–§6): the ones a client sends, written here; the ones a
 * server sends, read and checked here; and `ops` messages read exactly as the
 * server reads them (§5), so the conformance vectors pin this code too.
 *
 * The history requests (`history`, `conflicts`: docs/protocol.md §6, "History
 * requests") are written here too, and their answers (`history_page`,
 * `conflicts_page`, or an `error` with the request's id) read by
 * {@link parseAnswerFrame}: the replica never sees them, its `parseServerFrame`
 * still calls them unknown.
 */

import type { JsonValue } from "./canonical";
import { DEFAULT_LIMITS, type Entry, type Limits, type WireEntry, readEntry } from "./entry";
import { ProtocolError } from "./errors";
import type { LwwMap } from "./merge";
import { isTimestamp, nodeOf } from "./timestamp";

export const PROTOCOL_VERSION = 1;
/** The greatest message id: 2^53 − 1. */
export const MAX_ID = Number.MAX_SAFE_INTEGER;

const DOC_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Whether `name` is a document name: 1–128 of `[A-Za-z0-9._-]`, not starting with `.`. */
export function isDocName(name: string): boolean {
  return DOC_NAME.test(name);
}

/** A client's resume point: the document's lineage and the greatest seq it has seen. */
export interface Since {
  readonly epoch: string;
  readonly seq: number;
}

// -- what a client sends ---------------------------------------------------

export function helloFrame(hello: { doc: string; node: string; token?: string | null; since?: Since | null }): string {
  const frame: Record<string, unknown> = { type: "hello", v: PROTOCOL_VERSION, doc: hello.doc, node: hello.node };
  if (hello.token) frame.token = hello.token;
  if (hello.since) frame.since = { epoch: hello.since.epoch, seq: hello.since.seq };
  return JSON.stringify(frame);
}

export function opsFrame(id: number, entries: readonly WireEntry[]): string {
  return JSON.stringify({ type: "ops", id, ops: entries });
}

export function pingFrame(id?: number): string {
  return JSON.stringify(id === undefined ? { type: "ping" } : { type: "ping", id });
}

/** The most versions or conflicts one history request may ask for (the server's `limit` bound). */
export const MAX_HISTORY_LIMIT = 1000;

/** A `history` request: versions of `key`, newest first, older than the ts `before`. */
export function historyFrame(id: number, key: string, page: { limit?: number; before?: string | null } = {}): string {
  const frame: Record<string, unknown> = { type: "history", id, key };
  if (page.limit !== undefined) frame.limit = page.limit;
  if (page.before != null) frame.before = page.before;
  return JSON.stringify(frame);
}

/** A `conflicts` request: overridden writes (of `node` only, if given), newest first, below id `before`. */
export function conflictsFrame(id: number, page: { node?: string | null; limit?: number; before?: number | null } = {}): string {
  const frame: Record<string, unknown> = { type: "conflicts", id };
  if (page.node != null) frame.node = page.node;
  if (page.limit !== undefined) frame.limit = page.limit;
  if (page.before != null) frame.before = page.before;
  return JSON.stringify(frame);
}

// -- what a server sends -----------------------------------------------------

export interface WelcomeFrame {
  type: "welcome";
  doc: string;
  node: string;
  epoch: string;
  seq: number;
  time: string;
  full: boolean;
  readonly: boolean;
  peers: string[];
  /** The cluster of a node that is one of several; null from a single server. */
  cluster: string | null;
}
export interface EntriesFrame {
  type: "entries";
  entries: unknown[];
}
export interface SyncedFrame {
  type: "synced";
  seq: number;
}
export interface AckFrame {
  type: "ack";
  id: number;
  seq: number;
  applied: number;
  ignored: number;
}
export interface BroadcastFrame {
  type: "ops";
  seq: number;
  origin: string;
  ops: unknown[];
}
export interface PresenceFrame {
  type: "presence";
  joined: string[];
  left: string[];
}
export interface PongFrame {
  type: "pong";
  id: number | null;
  time: string;
}
export interface ErrorFrame {
  type: "error";
  /** An `ErrorCode`, or a code this client does not know yet (from a newer server). */
  code: string;
  message: string;
  id: number | null;
  /** The index of the offending entry in the message, when the error is about one. */
  entry: number | null;
}
/** A frame of a type this client does not know: ignored, for forward compatibility. */
export interface UnknownFrame {
  type: "unknown";
  name: string;
}

export type ServerFrame =
  | WelcomeFrame
  | EntriesFrame
  | SyncedFrame
  | AckFrame
  | BroadcastFrame
  | PresenceFrame
  | PongFrame
  | ErrorFrame
  | UnknownFrame;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A frame's text as a JSON object; throws `bad_json` or `bad_message` when it is not one. */
function parseObject(text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError("bad_json", `not JSON: ${(error as Error).message}`);
  }
  if (!isRecord(raw)) throw new ProtocolError("bad_message", "a frame must be a JSON object");
  return raw;
}

function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

function readError(raw: Record<string, unknown>): ErrorFrame {
  return {
    type: "error",
    code: typeof raw.code === "string" ? raw.code : "internal",
    message: typeof raw.message === "string" ? raw.message : "",
    id: isId(raw.id) ? raw.id : null,
    entry: isId(raw.entry) ? raw.entry : null,
  };
}

/** Read one frame from the server; throws `bad_json`/`bad_message` when it is not of the protocol's form. */
export function parseServerFrame(text: string): ServerFrame {
  const raw = parseObject(text);
  const bad = (what: string): ProtocolError => new ProtocolError("bad_message", `${String(raw.type)}: ${what}`);
  switch (raw.type) {
    case "welcome": {
      const { doc, node, epoch, seq, time, full, readonly, peers } = raw;
      if (typeof doc !== "string" || typeof node !== "string" || typeof epoch !== "string") {
        throw bad('needs string "doc", "node" and "epoch"');
      }
      if (!isId(seq)) throw bad('"seq" must be an integer');
      if (typeof time !== "string") throw bad('"time" must be a timestamp');
      if (typeof full !== "boolean") throw bad('"full" must be a boolean');
      const peerList = peers === undefined ? [] : peers;
      if (!isStringArray(peerList)) throw bad('"peers" must be a list of node ids');
      // `cluster` is a later, optional field: unknown fields are ignored, so is one of another type.
      const cluster = typeof raw.cluster === "string" ? raw.cluster : null;
      return { type: "welcome", doc, node, epoch, seq, time, full, readonly: readonly === true, peers: peerList, cluster };
    }
    case "entries":
      if (!Array.isArray(raw.entries)) throw bad('"entries" must be a list');
      return { type: "entries", entries: raw.entries };
    case "synced":
      if (!isId(raw.seq)) throw bad('"seq" must be an integer');
      return { type: "synced", seq: raw.seq };
    case "ack": {
      const { id, seq, applied, ignored } = raw;
      if (!isId(id) || !isId(seq)) throw bad('"id" and "seq" must be integers');
      return {
        type: "ack",
        id,
        seq,
        applied: isId(applied) ? applied : 0,
        ignored: isId(ignored) ? ignored : 0,
      };
    }
    case "ops": {
      const { seq, origin, ops } = raw;
      if (!isId(seq)) throw bad('"seq" must be an integer');
      if (!Array.isArray(ops)) throw bad('"ops" must be a list');
      return { type: "ops", seq, origin: typeof origin === "string" ? origin : "", ops };
    }
    case "presence": {
      const joined = raw.joined ?? [];
      const left = raw.left ?? [];
      if (!isStringArray(joined) || !isStringArray(left)) throw bad('"joined" and "left" must be lists of node ids');
      return { type: "presence", joined, left };
    }
    case "pong":
      if (typeof raw.time !== "string") throw bad('"time" must be a timestamp');
      return { type: "pong", id: isId(raw.id) ? raw.id : null, time: raw.time };
    case "error":
      return readError(raw);
    default:
      return { type: "unknown", name: String(raw.type) };
  }
}

// -- answers to the history requests ------------------------------------------

/** What a version holds: a value, a delete, or (a conflict's winner that left the history) unknown. */
export type VersionContent =
  | { readonly kind: "value"; readonly value: JsonValue }
  | { readonly kind: "deleted" }
  | { readonly kind: "unknown" };

/** One version of a key as the server's history reports it; `node` is the writer, from the ts. */
export type Version = { readonly ts: string; readonly node: string } & VersionContent;

/** An overridden write: `lost` lost its merge to `winner`; the server saw it at `time` (ms). */
export interface Conflict {
  readonly id: number;
  readonly time: number;
  readonly key: string;
  readonly lost: Version;
  readonly winner: Version;
}

export interface HistoryPageFrame {
  type: "history_page";
  id: number;
  key: string;
  /** Newest first. */
  versions: Version[];
  /** The `before` of the next (older) page; null on the last. */
  next: string | null;
}

export interface ConflictsPageFrame {
  type: "conflicts_page";
  id: number;
  /** Newest first. */
  conflicts: Conflict[];
  /** The `before` of the next (older) page; null on the last. */
  next: number | null;
}

/** An answer to a request, matched to it by `id`. */
export type AnswerFrame = HistoryPageFrame | ConflictsPageFrame | (ErrorFrame & { id: number });

function readVersion(raw: unknown, where: string, mayBeUnknown: boolean): Version {
  if (!isRecord(raw) || typeof raw.ts !== "string" || !isTimestamp(raw.ts)) {
    throw new ProtocolError("bad_message", `${where}: needs a valid "ts"`);
  }
  const head = { ts: raw.ts, node: nodeOf(raw.ts) };
  if (raw.deleted === true) return { ...head, kind: "deleted" };
  if ("value" in raw) return { ...head, kind: "value", value: raw.value as JsonValue };
  if (mayBeUnknown) return { ...head, kind: "unknown" };
  throw new ProtocolError("bad_message", `${where}: needs "value" or "deleted": true`);
}

function readConflict(raw: unknown, index: number): Conflict {
  const where = `conflicts[${index}]`;
  if (!isRecord(raw) || !isId(raw.id) || typeof raw.key !== "string") {
    throw new ProtocolError("bad_message", `${where}: needs an integer "id" and a string "key"`);
  }
  return {
    id: raw.id,
    time: isId(raw.time) ? raw.time : 0,
    key: raw.key,
    lost: readVersion(raw.lost, `${where}.lost`, false),
    // The winner's version may have left the history: then only its ts is known.
    winner: readVersion(raw.winner, `${where}.winner`, true),
  };
}

/**
 * Read a frame as an answer to a request: a `history_page`, a
 * `conflicts_page`, or an `error` carrying an id; null for any other frame
 * (the replica's). Throws `bad_json`/`bad_message` — with the frame's `id`
 * when it has one, so the request it answers can fail — when it is malformed.
 */
export function parseAnswerFrame(text: string): AnswerFrame | null {
  const raw = parseObject(text);
  if (raw.type !== "history_page" && raw.type !== "conflicts_page" && raw.type !== "error") return null;
  if (!isId(raw.id)) {
    if (raw.type === "error") return null; // about no request: the replica's
    throw new ProtocolError("bad_message", `${raw.type}: "id" must be an integer`);
  }
  const id = raw.id;
  const bad = (what: string): ProtocolError => new ProtocolError("bad_message", `${String(raw.type)}: ${what}`, { id });
  const list = (name: string): unknown[] => {
    const items = raw[name];
    if (!Array.isArray(items)) throw bad(`"${name}" must be a list`);
    return items;
  };
  try {
    switch (raw.type) {
      case "history_page": {
        if (typeof raw.key !== "string") throw bad('"key" must be a string');
        const versions = list("versions").map((item, index) => readVersion(item, `versions[${index}]`, false));
        const next = raw.next ?? null;
        if (next !== null && (typeof next !== "string" || !isTimestamp(next))) throw bad('"next" must be a timestamp or null');
        return { type: "history_page", id, key: raw.key, versions, next };
      }
      case "conflicts_page": {
        const conflicts = list("conflicts").map(readConflict);
        const next = raw.next ?? null;
        if (next !== null && !isId(next)) throw bad('"next" must be a conflict id or null');
        return { type: "conflicts_page", id, conflicts, next };
      }
      case "error":
        return { ...readError(raw), id };
    }
  } catch (error) {
    if (error instanceof ProtocolError && error.id === null) {
      throw new ProtocolError(error.code, `${String(raw.type)}: ${error.message}`, { id });
    }
    throw error;
  }
}

// -- ops messages, read the server's way (§5) ---------------------------------

/** A valid `ops` message. */
export interface OpsMessage {
  readonly id: number;
  readonly entries: Entry[];
}

/**
 * Read an `ops` message as the server does, validated as a whole in the
 * order `docs/protocol.md` §5 gives; the first failure is thrown, carrying the
 * message's id (when valid) and the offending entry's index.
 */
export function readOpsFrame(text: string, limits: Limits = DEFAULT_LIMITS, nowMs?: number): OpsMessage {
  const raw = parseObject(text);
  const echoed = isId(raw.id) ? raw.id : null;
  if (raw.type !== "ops") {
    const what = typeof raw.type === "string" ? `unknown frame type ${JSON.stringify(raw.type)}` : 'a frame needs a string "type"';
    throw new ProtocolError("bad_message", what, { id: echoed });
  }
  if (echoed === null) {
    throw new ProtocolError("bad_message", `"id" must be an integer from 0 to ${MAX_ID}`);
  }
  const ops = raw.ops;
  if (!Array.isArray(ops)) throw new ProtocolError("bad_message", '"ops" must be a list of entries', { id: echoed });
  if (ops.length === 0) throw new ProtocolError("bad_message", '"ops" must not be empty', { id: echoed });
  if (ops.length > limits.maxOps) {
    throw new ProtocolError("too_large", `${ops.length} entries, over the limit of ${limits.maxOps}`, { id: echoed });
  }
  const entries = ops.map((op: unknown, index: number) => {
    try {
      return readEntry(op, limits, nowMs);
    } catch (error) {
      if (error instanceof ProtocolError) throw error.at(echoed, index);
      throw error;
    }
  });
  return { id: echoed, entries };
}

/** Apply an `ops` message to a map as the server would: whole or not at all. */
export function applyOpsFrame(
  map: LwwMap,
  text: string,
  limits: Limits = DEFAULT_LIMITS,
  nowMs?: number,
): { id: number; applied: number; ignored: number } {
  const message = readOpsFrame(text, limits, nowMs);
  let applied = 0;
  for (const entry of message.entries) if (map.merge(entry)) applied++;
  return { id: message.id, applied, ignored: message.entries.length - applied };
}
