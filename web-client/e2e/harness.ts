/**
 * What the end-to-end tests run against: a real `syncd serve` (from the
 * repository's .venv) serving the built editor, Debian's headless Chromium
 * driven by playwright-core, and a raw-frame protocol client for checking the
 * server's state. Traffic stays on 127.0.0.1, every wait is bounded, scaled by
 * `$SYNCD_TEST_TIMEOUT_FACTOR`.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import WebSocket from "ws";

export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const SYNCD = join(REPO, ".venv", "bin", "syncd");
export const DIST = join(REPO, "syncd", "web");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const FACTOR = Number(process.env.SYNCD_TEST_TIMEOUT_FACTOR ?? "1") || 1;
/** How long any single expected event may take. */
export const TIMEOUT = 10_000 * FACTOR;

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => resolvePort(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeout` ms. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeout = TIMEOUT): Promise<T> {
  const deadline = Date.now() + timeout;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last instanceof Error ? String(last) : JSON.stringify(last)})` : ""}`);
    }
    await sleep(50);
  }
}

/** A `syncd serve` process with its own data directory; it can be stopped and started again on the same port. */
export class SyncdServer {
  readonly data: string;
  port = 0;
  private process: ChildProcess | null = null;
  private stderr = "";

  constructor(private readonly args: string[] = []) {
    this.data = mkdtempSync(join(tmpdir(), "syncd-web-e2e-"));
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<void> {
    if (!existsSync(SYNCD)) throw new Error(`${SYNCD} is missing: run \`make build-lib\` first`);
    if (!existsSync(join(DIST, "index.html"))) throw new Error(`${DIST} is not built: run \`npm run build\` first`);
    if (this.port === 0) this.port = await freePort();
    this.stderr = "";
    const child = spawn(SYNCD, ["serve", "--host", "127.0.0.1", "--port", String(this.port), "--data", this.data, ...this.args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, COLUMNS: "200" },
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.process = child;
    await eventually(`syncd serve on port ${this.port} (stderr: ${this.stderr})`, async () => {
      if (child.exitCode !== null) throw new Error(`syncd serve exited with ${child.exitCode}: ${this.stderr}`);
      try {
        const answer = await fetch(`${this.httpUrl}/healthz`);
        return answer.ok;
      } catch {
        return false;
      }
    }, 20_000 * FACTOR);
  }

  /** SIGTERM, and wait for the process to exit. */
  async stop(): Promise<void> {
    await this.end("SIGTERM");
  }

  /** SIGKILL (a crash: connections are cut, not closed), and wait for the process to exit. */
  async kill(): Promise<void> {
    await this.end("SIGKILL");
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.process;
    if (child === null) return;
    this.process = null;
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000 * FACTOR);
    await exited;
    clearTimeout(timer);
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.data, { recursive: true, force: true });
  }

  get log(): string {
    return this.stderr;
  }
}

/** Debian's Chromium, headless, talking to 127.0.0.1 only. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: \`apt-get install -y chromium\` (make test-web does it)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000 * FACTOR,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A fresh browser context (its own storage: a separate "device") and a page on `url`. */
export async function openPage(browser: Browser, url: string, viewport = { width: 1200, height: 800 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, reducedMotion: "reduce" });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on("pageerror", (error) => {
    console.error(`page error on ${url}: ${error.message}`);
  });
  await page.goto(url);
  return { context, page };
}

// -- the editor, as a person uses it --------------------------------------------------------

export const editor = {
  status: (page: Page) => page.getByTestId("status").innerText(),
  pending: (page: Page) => page.getByTestId("pending").innerText(),

  async waitForStatus(page: Page, pattern: RegExp): Promise<void> {
    await eventually(`status ${pattern}`, async () => pattern.test(await editor.status(page)));
  },

  /** The value cell's text of `key`, or null when the key is not shown. */
  async value(page: Page, key: string): Promise<string | null> {
    const row = page.locator(`tr[data-key="${cssEscape(key)}"]`);
    if ((await row.count()) === 0) return null;
    return (await row.locator("td.value .value-string, td.value .value-json").innerText()).trim();
  },

  async waitForValue(page: Page, key: string, expected: string | null): Promise<void> {
    await eventually(`${key} = ${expected} in the page`, async () => (await editor.value(page, key)) === expected);
  },

  /** Everything the table shows, as {key: value text}. */
  async table(page: Page): Promise<Record<string, string>> {
    return page.evaluate(() => {
      const result: Record<string, string> = {};
      for (const row of document.querySelectorAll("tbody tr[data-key]")) {
        const value = row.querySelector("td.value .value-string, td.value .value-json");
        result[row.getAttribute("data-key") ?? ""] = (value?.textContent ?? "").trim();
      }
      return result;
    });
  },

  /** Add (or replace) a key with the add form. */
  async add(page: Page, key: string, value: string, mode: "json" | "text" = "json"): Promise<void> {
    const form = page.locator("form.add-form");
    await form.getByLabel("Key", { exact: true }).fill(key);
    await form.getByRole("radio", { name: mode === "json" ? "JSON" : "Text" }).check();
    await form.getByLabel("Value", { exact: true }).fill(value);
    await form.getByRole("button", { name: /^(Add|Replace)$/ }).click();
  },

  /** Edit a key's value in its row (in `mode`, or the one the editor opens in), saving with Ctrl+Enter. */
  async edit(page: Page, key: string, value: string, mode?: "json" | "text"): Promise<void> {
    await page.getByRole("button", { name: `Edit ${key}`, exact: true }).click();
    const form = page.getByRole("form", { name: `Edit ${key}`, exact: true });
    if (mode !== undefined) await form.getByRole("radio", { name: mode === "json" ? "JSON" : "Text" }).check();
    const box = form.getByLabel(`New value of ${key}`, { exact: true });
    await box.fill(value);
    await box.press("Control+Enter");
  },

  async remove(page: Page, key: string): Promise<void> {
    await page.getByRole("button", { name: `Delete ${key}`, exact: true }).click();
    await page.getByRole("group", { name: `Delete ${key}?` }).getByRole("button", { name: "Delete" }).click();
  },
};

function cssEscape(text: string): string {
  return text.replace(/["\\]/g, "\\$&");
}

// -- the CLI, and raw protocol frames -------------------------------------------------------

/** Whether this checkout's `syncd` has the client subcommands (`syncd set`). */
export function cliHasSet(): boolean {
  if (!existsSync(SYNCD)) return false;
  return spawnSync(SYNCD, ["set", "--help"], { stdio: "ignore", timeout: 20_000 }).status === 0;
}

/** What `syncd --version` prints: `syncd 0.1.0`. */
export function syncdVersion(): string {
  const run = spawnSync(SYNCD, ["--version"], { encoding: "utf-8", timeout: 20_000 });
  if (run.status !== 0) throw new Error(`syncd --version exited with ${run.status}: ${run.stderr}`);
  return run.stdout.trim();
}

/** Run `syncd ARGS…` (a client command) against `server`; resolves to its stdout. */
export function runCli(server: SyncdServer, args: string[], home: string): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(SYNCD, args, {
      env: { ...process.env, SYNCD_URL: server.wsUrl, SYNCD_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000 * FACTOR);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) done(out);
      else fail(new Error(`syncd ${args.join(" ")} exited with ${code}: ${err}`));
    });
  });
}

type Frame = Record<string, unknown>;

/** A protocol client speaking raw frames, for writing and for reading the server's state. */
export class RawClient {
  private readonly socket: WebSocket;
  private readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  private closedWith: number | null = null;
  private nextId = 1;
  /** The server's `welcome` frame. */
  welcome: Frame = {};
  private wall = Date.now();
  private counter = 0;

  private constructor(socket: WebSocket, readonly node: string) {
    this.socket = socket;
    socket.on("message", (data) => {
      // A text frame with the default binaryType ("nodebuffer") arrives as one Buffer.
      const frame = JSON.parse((data as Buffer).toString("utf8")) as Frame;
      // As a real client's clock does: a write made after an entry was received is stamped above it.
      for (const entry of ((frame.ops ?? frame.entries) as Frame[] | undefined) ?? []) this.observe(entry.ts as string);
      this.frames.push(frame);
      this.wake();
    });
    socket.on("close", (code) => {
      this.closedWith = code;
      this.wake();
    });
  }

  /** Connect to `doc` and complete the handshake; resolves to the client and the document's live values. */
  static async connect(server: SyncdServer, doc: string, node: string, token?: string): Promise<{ client: RawClient; values: Record<string, unknown> }> {
    const socket = new WebSocket(server.wsUrl);
    await new Promise<void>((done, fail) => {
      socket.once("open", () => done());
      socket.once("error", fail);
    });
    const client = new RawClient(socket, node);
    socket.send(JSON.stringify({ type: "hello", v: 1, doc, node, ...(token ? { token } : {}) }));
    const welcome = await client.next("welcome");
    client.welcome = welcome;
    const values: Record<string, unknown> = {};
    for (;;) {
      const frame = await client.next();
      if (frame.type === "synced") break;
      for (const entry of (frame.entries as Frame[] | undefined) ?? []) {
        if (entry.deleted === true) delete values[entry.key as string];
        else values[entry.key as string] = entry.value;
      }
    }
    client.observe(welcome.time as string);
    return { client, values };
  }

  /** The document's live values, read with a fresh connection. */
  static async snapshot(server: SyncdServer, doc: string, token?: string): Promise<Record<string, unknown>> {
    const { client, values } = await RawClient.connect(server, doc, `e2e-reader-${Math.floor(Math.random() * 1e9)}`, token);
    client.close();
    return values;
  }

  /** Write one key with a fresh HLC timestamp; resolves to the ack. */
  async set(key: string, value: unknown): Promise<Frame> {
    const id = this.nextId++;
    this.socket.send(JSON.stringify({ type: "ops", id, ops: [{ key, ts: this.tick(), value }] }));
    return this.next("ack");
  }

  /** The entry of `key` in the next broadcast that has one (other broadcasts are skipped); bounded. */
  async broadcastOf(key: string): Promise<Frame> {
    const deadline = Date.now() + TIMEOUT;
    while (Date.now() < deadline) {
      const entry = ((await this.next("ops")).ops as Frame[]).find((op) => op.key === key);
      if (entry !== undefined) return entry;
    }
    throw new Error(`timed out waiting for a broadcast of ${key}`);
  }

  /** The next frame (of `type`, skipping others); bounded. */
  async next(type?: string): Promise<Frame> {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const index = this.frames.findIndex((frame) => type === undefined || frame.type === type);
      if (index >= 0) return this.frames.splice(index, 1)[0]!;
      if (this.closedWith !== null) throw new Error(`connection closed (${this.closedWith}) waiting for ${type ?? "a frame"}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${type ?? "a frame"}`);
      await new Promise<void>((done) => {
        const timer = setTimeout(done, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          done();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }

  private observe(ts: string): void {
    const wall = Number(ts.slice(0, 13));
    const counter = Number(ts.slice(14, 19));
    if (wall > this.wall || (wall === this.wall && counter > this.counter)) {
      this.wall = wall;
      this.counter = counter;
    }
  }

  private tick(): string {
    const now = Date.now();
    if (now > this.wall) {
      this.wall = now;
      this.counter = 0;
    } else {
      this.counter++;
    }
    return `${String(this.wall).padStart(13, "0")}-${String(this.counter).padStart(5, "0")}-${this.node}`;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}
