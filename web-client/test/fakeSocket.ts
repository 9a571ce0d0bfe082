// A socket whose server side a test plays: the client tests' stand-in for a
// WebSocket (the real one is exercised end to end in e2e/).
import type { SocketLike } from "../src/sync/client";

export type Frame = Record<string, unknown>;

/** A socket whose server side the test plays. */
export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  readonly sent: Frame[] = [];
  closed: number | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data) as Frame);
  }

  close(code = 1000): void {
    if (this.closed !== null) return;
    this.closed = code;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code } as CloseEvent));
  }

  // -- the server's side --
  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }

  receive(...frames: Frame[]): void {
    for (const frame of frames) this.onmessage?.({ data: JSON.stringify(frame) } as MessageEvent);
  }

  drop(code = 1006): void {
    this.readyState = 3;
    this.closed = code;
    this.onclose?.({ code } as CloseEvent);
  }

  /** Answer the hello with an empty snapshot (or what `fields` says). */
  welcome(fields: Frame = {}, entries: Frame[] = []): void {
    const seq = (fields.seq as number | undefined) ?? 0;
    this.receive({
      type: "welcome",
      v: 1,
      doc: "d",
      node: "srv",
      epoch: "e1",
      seq,
      time: new Date(Date.now()).getTime().toString().padStart(13, "0") + "-00000-srv",
      full: true,
      readonly: false,
      peers: [],
      ...fields,
    });
    if (entries.length > 0) this.receive({ type: "entries", entries });
    this.receive({ type: "synced", seq });
  }

  ops(): Frame[] {
    return this.sent.filter((frame) => frame.type === "ops");
  }
}
