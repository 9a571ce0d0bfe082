/**
 * The TypeScript sync client of syncd: the wire protocol's rules (timestamps,
 * HLC, canonical JSON, merge), a sans-I/O replica, and the WebSocket client
 * with persistence. The React editor in `src/ui/` uses only this module.
 */

export { type JsonValue, canonicalize, canonicalText, compareUtf8, isWellFormed, parseJson, utf8Length } from "./canonical";
export { type ClientView, type ConflictsPage, type HistoryPage, type LostWrite, type SocketLike, type Status, SyncClient, defaultServerUrl } from "./client";
export { DEFAULT_LIMITS, Entry, type Limits, type WireEntry, parseEntry, readEntry } from "./entry";
export { type ErrorCode, ProtocolError, RequestError, type RequestFailure } from "./errors";
export { type Conflict, type Since, type Version, type VersionContent, applyOpsFrame, isDocName, readOpsFrame } from "./frames";
export { Hlc } from "./hlc";
export { LwwMap, wins } from "./merge";
export { claimNodeId, newNodeId } from "./node";
export { type Backoff, ServerRotation, backoffDelay } from "./rotation";
export { type Change, type ChangeSource, type Phase, Replica, type ReplicaEvent, type ReplicaState, type Write, validateKey, validateValue } from "./replica";
export { BrowserPersistence, MemoryPersistence, type Persistence } from "./storage";
export { compareTimestamps, formatTimestamp, isTimestamp, nodeOf, parseTimestamp, wallOf } from "./timestamp";
