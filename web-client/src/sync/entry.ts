/**
 * Entries (contract §1): one key's winning write, a live value or a tombstone,
 * and their wire form `{"key","ts","value"}` / `{"key","ts","deleted":true}`.
 *
 * {@link readEntry} validates a parsed wire entry the way the server does:
 * first its form (`bad_message`), then the size of its key and value
 * (`too_large`), then — when a clock reading is given — how far its wall
 * field is ahead (`clock_skew`).
 */

import { type JsonValue, canonicalize, isWellFormed, utf8Length } from "./canonical";
import { ProtocolError } from "./errors";
import { isTimestamp, wallOf } from "./timestamp";

/** An entry as it travels: a live value or a tombstone. */
export type WireEntry =
  | { key: string; ts: string; value: JsonValue }
  | { key: string; ts: string; deleted: true };

/** The limits the server applies (contract defaults). */
export interface Limits {
  /** Largest key, in UTF-8 bytes. */
  readonly maxKeyBytes: number;
  /** Largest value, in UTF-8 bytes of its canonical JSON text. */
  readonly maxValueBytes: number;
  /** Most entries in one `ops` message. */
  readonly maxOps: number;
  /** Milliseconds an entry's wall field may be ahead of the server's clock. */
  readonly maxSkewMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxKeyBytes: 1024,
  maxValueBytes: 65_536,
  maxOps: 1000,
  maxSkewMs: 60_000,
};

/** One key's entry in a replica. Immutable; the canonical text is computed once, when needed. */
export class Entry {
  readonly key: string;
  readonly ts: string;
  /** The value, or `undefined` for a tombstone. */
  readonly value: JsonValue | undefined;
  private canonicalText: string | undefined;

  private constructor(key: string, ts: string, value: JsonValue | undefined, canonical?: string) {
    this.key = key;
    this.ts = ts;
    this.value = value;
    this.canonicalText = canonical;
  }

  /** A live entry (the value must already be valid JSON; `canonical` when known). */
  static live(key: string, ts: string, value: JsonValue, canonical?: string): Entry {
    return new Entry(key, ts, value, canonical);
  }

  /** A tombstone. */
  static tombstone(key: string, ts: string): Entry {
    return new Entry(key, ts, undefined);
  }

  get deleted(): boolean {
    return this.value === undefined;
  }

  /** The value's canonical JSON text, or `null` for a tombstone. */
  get canonical(): string | null {
    if (this.value === undefined) return null;
    this.canonicalText ??= canonicalize(this.value);
    return this.canonicalText;
  }

  /** Whether two entries are the same write (same ts, same content). */
  sameAs(other: Entry): boolean {
    return this.ts === other.ts && this.key === other.key && this.canonical === other.canonical;
  }

  toWire(): WireEntry {
    return this.value === undefined
      ? { key: this.key, ts: this.ts, deleted: true }
      : { key: this.key, ts: this.ts, value: this.value };
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const has = (record: Record<string, unknown>, field: string): boolean =>
  Object.prototype.hasOwnProperty.call(record, field);

/**
 * Validate a parsed wire entry. With `limits`, keys and values over them are
 * `too_large`; with `nowMs`, an entry more than `limits.maxSkewMs` ahead is
 * `clock_skew`. Unknown fields are ignored.
 */
export function readEntry(raw: unknown, limits: Limits | null = DEFAULT_LIMITS, nowMs?: number): Entry {
  if (!isRecord(raw)) {
    throw new ProtocolError("bad_message", "an entry must be a JSON object");
  }
  const { key, ts } = raw;
  if (typeof key !== "string") throw new ProtocolError("bad_message", '"key" must be a string');
  if (key === "") throw new ProtocolError("bad_message", '"key" must not be empty');
  if (!isWellFormed(key)) throw new ProtocolError("bad_message", '"key" holds an unpaired surrogate');
  if (typeof ts !== "string") throw new ProtocolError("bad_message", '"ts" must be a string');
  if (!isTimestamp(ts)) {
    throw new ProtocolError("bad_message", `"ts" ${JSON.stringify(ts)} is not WWWWWWWWWWWWW-CCCCC-NODE`);
  }
  const hasValue = has(raw, "value");
  const hasDeleted = has(raw, "deleted");
  if (hasDeleted && raw.deleted !== true) {
    throw new ProtocolError("bad_message", '"deleted", when present, must be true');
  }
  if (hasValue && hasDeleted) throw new ProtocolError("bad_message", 'an entry has "value" or "deleted", not both');
  if (!hasValue && !hasDeleted) throw new ProtocolError("bad_message", 'an entry needs "value" or "deleted": true');
  let entry: Entry;
  if (hasValue) {
    const value = raw.value as JsonValue;
    entry = Entry.live(key, ts, value, canonicalize(value)); // bad_message for what JSON cannot hold
  } else {
    entry = Entry.tombstone(key, ts);
  }
  if (limits !== null) {
    checkSizes(entry, limits);
    if (nowMs !== undefined && wallOf(ts) - nowMs > limits.maxSkewMs) {
      throw new ProtocolError("clock_skew", `"ts" is more than ${limits.maxSkewMs} ms ahead of the server's clock`);
    }
  }
  return entry;
}

/** Throw `too_large` when the entry's key or value is over its limit. */
export function checkSizes(entry: Entry, limits: Limits = DEFAULT_LIMITS): void {
  const keyBytes = utf8Length(entry.key);
  if (keyBytes > limits.maxKeyBytes) {
    throw new ProtocolError("too_large", `the key is ${keyBytes} bytes, over the limit of ${limits.maxKeyBytes}`);
  }
  const canonical = entry.canonical;
  if (canonical !== null) {
    const valueBytes = utf8Length(canonical);
    if (valueBytes > limits.maxValueBytes) {
      throw new ProtocolError(
        "too_large",
        `the value is ${valueBytes} bytes as canonical JSON, over the limit of ${limits.maxValueBytes}`,
      );
    }
  }
}

/** Parse one wire entry from JSON text (not JSON is `bad_message`). */
export function parseEntry(text: string, limits: Limits | null = DEFAULT_LIMITS, nowMs?: number): Entry {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError("bad_message", `not JSON: ${(error as Error).message}`);
  }
  return readEntry(raw, limits, nowMs);
}
