/**
 * Timestamps (contract §2): `WWWWWWWWWWWWW-CCCCC-NODE`, 13 digits of wall-clock
 * milliseconds, 5 digits of logical counter, then the writer's node id.
 *
 * The first two fields are fixed-width, so comparing two timestamps as plain
 * strings orders them by (wall, counter, node): every field is ASCII, so
 * JavaScript's UTF-16 comparison equals the byte comparison the contract means.
 */

import { ProtocolError } from "./errors";

/** The whole-string form of a timestamp. `[0-9]`, never `\d`: no other digits. */
const TIMESTAMP = /^([0-9]{13})-([0-9]{5})-([A-Za-z0-9_-]{1,64})$/;
const NODE = /^[A-Za-z0-9_-]{1,64}$/;

export const MAX_WALL = 9_999_999_999_999;
export const MAX_COUNTER = 99_999;

/** A parsed timestamp. */
export interface Timestamp {
  readonly wall: number;
  readonly counter: number;
  readonly node: string;
}

/** Whether `text` is a valid timestamp. */
export function isTimestamp(text: string): boolean {
  return TIMESTAMP.test(text);
}

/** Whether `node` is a valid node id: 1–64 of `[A-Za-z0-9_-]`. */
export function isNode(node: string): boolean {
  return NODE.test(node);
}

/** Parse a timestamp; throws `bad_message` when `text` is not one. */
export function parseTimestamp(text: string): Timestamp {
  const match = TIMESTAMP.exec(text);
  if (match === null) {
    throw new ProtocolError("bad_message", `invalid timestamp ${JSON.stringify(text)}: want WWWWWWWWWWWWW-CCCCC-NODE`);
  }
  return { wall: Number(match[1]), counter: Number(match[2]), node: match[3]! };
}

/** Write a timestamp; throws `bad_message` for fields out of range. */
export function formatTimestamp(ts: Timestamp): string {
  const { wall, counter, node } = ts;
  if (!Number.isInteger(wall) || wall < 0 || wall > MAX_WALL) {
    throw new ProtocolError("bad_message", `wall ${wall} is not 0…${MAX_WALL}`);
  }
  if (!Number.isInteger(counter) || counter < 0 || counter > MAX_COUNTER) {
    throw new ProtocolError("bad_message", `counter ${counter} is not 0…${MAX_COUNTER}`);
  }
  if (!isNode(node)) {
    throw new ProtocolError("bad_message", `invalid node id ${JSON.stringify(node)}`);
  }
  return `${String(wall).padStart(13, "0")}-${String(counter).padStart(5, "0")}-${node}`;
}

/** Order two parsed timestamps by (wall, counter, node): negative, zero or positive. */
export function compareTimestamps(a: Timestamp, b: Timestamp): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1;
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return 0;
}

/** The wall-clock milliseconds of a valid timestamp text (no full parse). */
export function wallOf(ts: string): number {
  return Number(ts.slice(0, 13));
}

/** The node of a valid timestamp text. */
export function nodeOf(ts: string): string {
  return ts.slice(20);
}
