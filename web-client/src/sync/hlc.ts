/**
 * The Hybrid Logical Clock (contract §2; Kulkarni et al., 2014).
 *
 * It keeps the greatest (wall, counter) it has issued or observed. A local
 * write at physical time `p` gets `(p, 0)` when `p` is ahead of that, else
 * `(wall, counter + 1)`, or `(wall + 1, 0)` when the counter would pass 99999.
 * `observe` raises the clock to a received timestamp without issuing one, so
 * the next local write orders after everything this replica has seen.
 *
 * The physical clock is injected, so tests control time. It is corrected by
 * an offset to the server's clock (see {@link Hlc.observeServerTime}): the
 * server refuses entries more than `max_skew` ahead of its own clock, and
 * observing alone can only ever move a clock forward — a client whose wall
 * clock runs minutes ahead would otherwise be refused, and one that runs
 * behind would stamp every write with the last time it observed.
 */

import { ProtocolError } from "./errors";
import { MAX_COUNTER, MAX_WALL, formatTimestamp, isNode, parseTimestamp } from "./timestamp";

export class Hlc {
  readonly node: string;
  private wall = 0;
  private counter = 0;
  /** The server's wall clock minus ours, in milliseconds, as last estimated. */
  private offset = 0;
  private readonly physical: () => number;

  constructor(node: string, physical: () => number = Date.now) {
    if (!isNode(node)) {
      throw new ProtocolError("bad_message", `invalid node id ${JSON.stringify(node)}`);
    }
    this.node = node;
    this.physical = physical;
  }

  /** The greatest (wall, counter) issued or observed so far. */
  get state(): { wall: number; counter: number } {
    return { wall: this.wall, counter: this.counter };
  }

  /** The server's wall clock minus ours, in milliseconds, as last estimated. */
  get offsetMs(): number {
    return this.offset;
  }

  /** The physical time, corrected to the server's clock, in milliseconds. */
  physicalNow(): number {
    return Math.max(0, Math.floor(this.physical()) + this.offset);
  }

  /** A new timestamp, strictly greater than every one issued or observed. */
  now(): string {
    const p = Math.min(this.physicalNow(), MAX_WALL);
    let wall: number;
    let counter: number;
    if (p > this.wall) {
      wall = p;
      counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      wall = this.wall;
      counter = this.counter + 1;
    } else if (this.wall < MAX_WALL) {
      wall = this.wall + 1;
      counter = 0;
    } else {
      throw new ProtocolError("internal", "the clock is at its greatest timestamp and cannot advance");
    }
    this.wall = wall;
    this.counter = counter;
    return formatTimestamp({ wall, counter, node: this.node });
  }

  /** Raise the clock to a received timestamp (any node); invalid text is ignored. */
  observe(ts: string): void {
    let parsed;
    try {
      parsed = parseTimestamp(ts);
    } catch {
      return;
    }
    if (parsed.wall > this.wall || (parsed.wall === this.wall && parsed.counter > this.counter)) {
      this.wall = parsed.wall;
      this.counter = parsed.counter;
    }
  }

  /**
   * Take the server's clock (`welcome.time`, `pong.time`): observe it, and
   * estimate the offset of the server's wall clock to ours. `sentAt` is the
   * local time the request was sent (a `ping`): the server read its clock
   * about halfway through the round trip.
   */
  observeServerTime(ts: string, sentAt?: number): void {
    let parsed;
    try {
      parsed = parseTimestamp(ts);
    } catch {
      return;
    }
    const now = Math.floor(this.physical());
    const local = sentAt === undefined ? now : Math.floor((sentAt + now) / 2);
    this.offset = parsed.wall - local;
    this.observe(ts);
  }
}
