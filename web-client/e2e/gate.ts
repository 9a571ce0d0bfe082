/**
 * The network between one browser context and the server, under the test's
 * control: every WebSocket of the context goes through it (Playwright's
 * `routeWebSocket`, the real server behind). It can go offline (connections
 * cut, new ones closed at once), and hold back the `ops` frames a page sends
 * until released — a slow uplink, so that a write reaches the server after
 * one made later elsewhere.
 */

import type { BrowserContext, Page, WebSocketRoute } from "playwright-core";

export class NetworkGate {
  private online = true;
  private holding = false;
  private held: (() => void)[] = [];
  /** The connections through the gate: the page's side, and the server's. */
  private readonly open = new Map<WebSocketRoute, WebSocketRoute>();

  /** Route every WebSocket of `context` through this gate. */
  async install(context: BrowserContext): Promise<void> {
    await context.routeWebSocket(/\/ws$/, (page) => {
      if (!this.online) {
        void page.close({ code: 4002, reason: "offline (test)" });
        return;
      }
      const server = page.connectToServer();
      this.open.set(page, server);
      page.onMessage((message) => {
        const send = (): void => server.send(message);
        if (this.holding && typeof message === "string" && (JSON.parse(message) as { type?: unknown }).type === "ops") this.held.push(send);
        else send();
      });
      page.onClose((code, reason) => {
        this.open.delete(page);
        void server.close({ code: code ?? 1000, reason: reason ?? "" });
      });
      server.onClose((code, reason) => {
        this.open.delete(page);
        void page.close({ code: code ?? 1000, reason: reason ?? "" });
      });
    });
  }

  /** Cut the connections; new ones are closed at once until `goOnline`. */
  async goOffline(): Promise<void> {
    this.online = false;
    const open = [...this.open];
    this.open.clear();
    await Promise.all(
      open.flatMap(([page, server]) => [page.close({ code: 4002, reason: "offline (test)" }), server.close({ code: 1000, reason: "offline (test)" })]),
    );
  }

  /**
   * Let connections through again, holding back `ops` frames when `holdWrites`;
   * `page` is told the network is back (the browser's `online` event), so it
   * reconnects without waiting for its backoff.
   */
  async goOnline(page: Page, options: { holdWrites?: boolean } = {}): Promise<void> {
    this.holding = options.holdWrites ?? false;
    this.online = true;
    await page.evaluate(() => window.dispatchEvent(new Event("online")));
  }

  /** How many `ops` frames are held back. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Send the held `ops` frames, in order, and stop holding. */
  release(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const send of held) send();
  }
}
