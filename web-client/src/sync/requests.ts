/**
 * The history requests of one client waiting for their answers (`history`,
 * `conflicts`: docs/protocol.md §6, "History requests"), without I/O: ids
 * given out, answers matched to them by id, deadlines, and failing them all
 * when the connection ends.
 *
 * The rules are the Python client's (`Client.request`): a request is sent
 * once, on a live connection; its answer is the `history_page` or
 * `conflicts_page` carrying its id, or an `error` with its id, which fails it
 * (`RequestError`, reason `refused`, with the server's code). A connection
 * that closes before the answer fails it (`disconnected`): it is not sent
 * again on the next connection, the caller asks again.
 */

import type { Timers } from "./client";
import { ProtocolError, RequestError } from "./errors";
import { type ConflictsPageFrame, type HistoryPageFrame, parseAnswerFrame } from "./frames";

/**
 * The first request id. The replica numbers its `ops` and `ping` messages
 * from 1 up, so ids from here on are never one of them: an `error` answering
 * a request is never taken for the refusal of a write, nor the other way round.
 */
export const FIRST_REQUEST_ID = 2 ** 52;

/** The answer types, by the request that asks for them. */
export interface Answers {
  history: HistoryPageFrame;
  conflicts: ConflictsPageFrame;
}

const ANSWER_TYPE: { readonly [K in keyof Answers]: Answers[K]["type"] } = {
  history: "history_page",
  conflicts: "conflicts_page",
};

interface Waiting {
  readonly kind: keyof Answers;
  readonly resolve: (frame: HistoryPageFrame | ConflictsPageFrame) => void;
  readonly reject: (error: RequestError) => void;
  readonly timer: unknown;
}

export class RequestTable {
  private nextId = FIRST_REQUEST_ID;
  private readonly waiting = new Map<number, Waiting>();

  constructor(private readonly timers: Timers) {}

  /** How many requests wait for their answer. */
  get size(): number {
    return this.waiting.size;
  }

  /** A fresh id, and a promise of the answer carrying it, failed after `timeoutMs`. */
  expect<K extends keyof Answers>(kind: K, timeoutMs: number): { id: number; answer: Promise<Answers[K]> } {
    const id = this.nextId;
    this.nextId = id < Number.MAX_SAFE_INTEGER ? id + 1 : FIRST_REQUEST_ID;
    const answer = new Promise<Answers[K]>((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.settle(id)?.reject(new RequestError("timeout", `no answer to ${kind} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiting.set(id, { kind, resolve: resolve as (frame: HistoryPageFrame | ConflictsPageFrame) => void, reject, timer });
    });
    return { id, answer };
  }

  /**
   * Take a frame from the server if it answers a waiting request: resolve or
   * fail that request and return true (the replica must not see the frame);
   * false for any other frame.
   */
  receive(text: string): boolean {
    if (this.waiting.size === 0) return false; // nothing to match: no need to read the frame twice
    let frame;
    try {
      frame = parseAnswerFrame(text);
    } catch (error) {
      const id = error instanceof ProtocolError ? error.id : null;
      const request = id === null ? undefined : this.settle(id);
      if (request === undefined) return false; // not an answer to us: the replica reports it
      request.reject(new RequestError("invalid", `the server's answer to ${request.kind} is malformed: ${(error as Error).message}`));
      return true;
    }
    if (frame === null) return false;
    const request = this.settle(frame.id);
    if (request === undefined) return false;
    if (frame.type === "error") {
      request.reject(new RequestError("refused", `the server refused ${request.kind}: ${frame.message}`, frame.code));
    } else if (frame.type !== ANSWER_TYPE[request.kind]) {
      request.reject(new RequestError("invalid", `the server answered ${request.kind} with ${frame.type}`));
    } else {
      request.resolve(frame);
    }
    return true;
  }

  /** Fail every waiting request (the connection closed, or the client stopped). */
  failAll(error: RequestError): void {
    for (const id of [...this.waiting.keys()]) this.settle(id)?.reject(error);
  }

  private settle(id: number): Waiting | undefined {
    const request = this.waiting.get(id);
    if (request === undefined) return undefined;
    this.waiting.delete(id);
    this.timers.clearTimeout(request.timer);
    return request;
  }
}
