/**
 * The one error type of the sync core: a protocol error code (contract §6) with
 * a human-readable message, and where it applies the message `id` and the
 * index of the offending entry — the same fields the server's `error` frame has.
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
