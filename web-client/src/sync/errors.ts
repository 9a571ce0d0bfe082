/**
 * The errors of the sync core. `ProtocolError`: a protocol error code (contract §6) with
 * a human-readable message, and where it applies the message `id` and the
 * index of the offending entry — the same fields the server's `error` frame has.
 *
 * `RequestError`: the one error of the history requests: why a request
 * got no answer (refused with a code, timed out, disconnected, …).
 */

/** The error codes of the contract (§6). */
export type ErrorCode =
  | "bad_json"
  | "bad_message"
  | "not_ready"
  | "unsupported_version"
  | "unauthorized"
  | "forbidden"
  | "too_large"
  | "clock_skew"
  | "rate_limited"
  | "internal";

export class ProtocolError extends Error {
  readonly code: ErrorCode;
  /** The id of the message the error is about, when it has a valid one. */
  readonly id: number | null;
  /** The index in `ops` of the offending entry, or null for the message itself. */
  readonly entry: number | null;

  constructor(code: ErrorCode, message: string, options: { id?: number | null; entry?: number | null } = {}) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.id = options.id ?? null;
    this.entry = options.entry ?? null;
  }

  /** The same error, about message `id` and entry `entry` (messages get an `ops[i]: ` prefix). */
  at(id: number | null, entry: number | null): ProtocolError {
    const message = entry === null ? this.message : `ops[${entry}]: ${this.message}`;
    return new ProtocolError(this.code, message, { id, entry });
  }
}

/** Why a request to the server (`history`, `conflicts`) gave no answer. */
export type RequestFailure =
  /** The server answered with an `error` frame; `code` is its code. */
  | "refused"
  /** Its answer did not come in time (or the connection was not live in time to send it). */
  | "timeout"
  /** The connection closed before the answer came; the request was not sent again. */
  | "disconnected"
  /** The client cannot connect: it was stopped, or the server refused the handshake. */
  | "unavailable"
  /** The answer was malformed. */
  | "invalid";

/** A request to the server that failed: why, and the server's error code when it refused it. */
export class RequestError extends Error {
  readonly reason: RequestFailure;
  /** The server's error code (`bad_message`, `too_large`, `internal`, …) when `reason` is `refused`. */
  readonly code: string | null;

  constructor(reason: RequestFailure, message: string, code: string | null = null) {
    super(message);
    this.name = "RequestError";
    this.reason = reason;
    this.code = code;
  }
}
