/**
 * Which server to try next, and after how long: the failover policy of the
 * sync client, with no I/O (the client in `client.ts` asks it, then acts).
 *
 * The servers are the nodes of one cluster (or one single server): every node
 * holds the whole document, so any of them will do. A connection that fails
 * or is lost moves on to the next server at once; only when a whole round of
 * servers has failed since the last completed handshake does the next attempt
 * wait, with exponential backoff and jitter (see {@link backoffDelay}). A
 * completed handshake starts the round and the backoff over, on the server it
 * reached: the client stays there until that connection is lost.
 */

/** The delay before reconnect attempt `attempt` (0-based): exponential, capped, jittered into its upper half. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export class ServerRotation {
  readonly urls: readonly string[];
  private index = 0;
  /** Servers that failed since the last completed handshake (or the last backoff). */
  private failedInRound = 0;
  /** Whole rounds that failed in a row: the backoff's attempt number. */
  private failedRounds = 0;

  constructor(
    urls: readonly string[],
    private readonly backoff: Backoff,
    private readonly random: () => number,
  ) {
    if (urls.length === 0) throw new Error("at least one server URL is needed");
    this.urls = [...urls];
  }

  /** The server to connect to (or connected to) now. */
  get current(): string {
    return this.urls[this.index]!;
  }

  /** The current server failed or its connection was lost: move to the next; returns the delay (ms) before trying it. */
  failed(): number {
    this.index = (this.index + 1) % this.urls.length;
    this.failedInRound++;
    if (this.failedInRound < this.urls.length) return 0;
    this.failedInRound = 0;
    return backoffDelay(this.failedRounds++, this.backoff.initialMs, this.backoff.maxMs, this.random);
  }

  /** A handshake completed on the current server, or the user asked to connect now: the round and the backoff start over. */
  reset(): void {
    this.failedInRound = 0;
    this.failedRounds = 0;
  }
}
