// A key's history and the overridden writes (issue #13) in real headless Chromium against a real `syncd serve`:
// edit, open the history, restore an old version and see it elsewhere; two pages writing offline make a conflict,
// listed with the page's own marked; read-only tokens read but cannot restore; a server without history says so.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetworkGate } from "./gate";
import { RawClient, SyncdServer, editor, eventually, launchBrowser, openPage, runCli } from "./harness";

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
});

const history = {
  drawer: (page: Page): Locator => page.getByRole("dialog", { name: /^History of / }),

  /** The values (or "deleted") the open drawer lists, newest first. */
  async values(page: Page): Promise<string[]> {
    const items = history.drawer(page).locator("li.version .version-value");
    return (await items.allInnerTexts()).map((text) => text.trim());
  },

  async waitForValues(page: Page, what: string, check: (values: string[]) => boolean): Promise<string[]> {
    return eventually(what, async () => {
      const values = await history.values(page);
      return check(values) && values;
    });
  },

  /** The list item of the version holding `value`. */
  version: (page: Page, value: string): Locator =>
    history.drawer(page).locator("li.version").filter({ has: page.locator(".version-value", { hasText: new RegExp(`^${value}$`) }) }),
};

/** Wait until the page has no unsent change. */
async function settled(page: Page): Promise<void> {
  await eventually("all changes sent", async () => (await editor.pending(page)).includes("All changes sent"));
}

describe("with history kept", () => {
  const server = new SyncdServer();
  const home = mkdtempSync(join(tmpdir(), "syncd-web-e2e-home-"));

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
    rmSync(home, { recursive: true, force: true });
  });

  it("lists a key's versions newest first, restores an old one, and another client sees it", async () => {
    const a = await openPage(browser, `${server.httpUrl}/#/doc/hist`);
    const b = await openPage(browser, `${server.httpUrl}/#/doc/hist`);
    await editor.waitForStatus(a.page, /^Live$/);
    await editor.add(a.page, "title", '"Draft"');
    await settled(a.page);
    // One version per acknowledged write.
    for (const value of ["Second draft", "Final"]) {
      await editor.edit(a.page, "title", value);
      await settled(a.page);
    }

    // The keyboard shortcut: h on the key's row.
    await a.page.locator('tr[data-key="title"] th.key').focus();
    await a.page.keyboard.press("h");
    const drawer = history.drawer(a.page);
    await drawer.waitFor();
    expect(await a.page.evaluate(() => document.activeElement?.textContent)).toBe("History of title");
    expect(await history.waitForValues(a.page, "three versions", (values) => values.length === 3)).toEqual(["Final", "Second draft", "Draft"]);
    // Each names its writer ("you": this tab) and its local time; the newest is current and cannot be restored.
    const newest = drawer.locator("li.version").first();
    expect(await newest.locator(".version-head").innerText()).toMatch(/^\d{1,2}:\d{2}:\d{2}\b.* you current$/);
    expect(await newest.getByRole("button", { name: /^Restore/ }).isDisabled()).toBe(true);

    await history.version(a.page, "Draft").getByRole("button", { name: /^Restore title to its value of / }).click();
    await editor.waitForValue(a.page, "title", "Draft");
    // The restore is a new write: the newest version, once the server has it.
    await history.waitForValues(a.page, "the restore on top", (values) => values.join("|") === "Draft|Final|Second draft|Draft");
    await editor.waitForValue(b.page, "title", "Draft");
    expect(await runCli(server, ["get", "--doc", "hist", "title"], home)).toBe("Draft\n");

    // Escape closes the drawer and gives the focus back to the row.
    await a.page.keyboard.press("Escape");
    await eventually("the drawer closed", async () => (await drawer.count()) === 0);
    expect(await a.page.evaluate(() => document.activeElement?.closest("tr")?.getAttribute("data-key"))).toBe("title");
    await a.context.close();
    await b.context.close();
  });

  it("restores a delete as a delete, pages to older versions, and follows changes made elsewhere", async () => {
    const { client } = await RawClient.connect(server, "many", "e2e-writer");
    for (let i = 1; i <= 55; i++) await client.set("counter", i);
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/many`);
    await editor.waitForStatus(page, /^Live$/);
    await editor.waitForValue(page, "counter", "55");
    await page.getByRole("button", { name: "History of counter", exact: true }).click();
    const first = await history.waitForValues(page, "the first page", (values) => values.length > 0);
    expect(first).toHaveLength(50);
    expect(first[0]).toBe("55");
    await history.drawer(page).getByRole("button", { name: "Older versions" }).click();
    const all = await history.waitForValues(page, "every version", (values) => values.length === 55);
    expect(all.at(-1)).toBe("1");
    expect(await history.drawer(page).getByRole("button", { name: "Older versions" }).count()).toBe(0);
    // Writers other than this tab are named by their node.
    expect(await history.drawer(page).locator("li.version .writer").first().innerText()).toBe("e2e-writer");

    // A change made elsewhere appears on top while the drawer is open.
    await client.set("counter", "deleted soon");
    await history.waitForValues(page, "the new version", (values) => values[0] === "deleted soon");
    await page.keyboard.press("Escape");

    // Delete the key, then restore the delete after bringing a value back.
    await editor.remove(page, "counter");
    await settled(page);
    // The writer has the delete before it writes again: its clock stamps the new value above it.
    expect(await client.broadcastOf("counter")).toMatchObject({ deleted: true });
    await client.set("counter", "back");
    await editor.waitForValue(page, "counter", "back");
    await page.getByRole("button", { name: "History of counter", exact: true }).click();
    await history.waitForValues(page, "the delete listed", (values) => values[0] === "back" && values[1] === "deleted");
    await history.version(page, "deleted").getByRole("button", { name: /^Restore counter to its delete of / }).click();
    await editor.waitForValue(page, "counter", null);
    await eventually("the server deleted it", async () => !("counter" in (await RawClient.snapshot(server, "many"))));
    client.close();
    await context.close();
  });

  it("lists a conflict of two pages that wrote offline, the page's own marked, from the notice of its lost change", async () => {
    const url = `${server.httpUrl}/#/doc/clash`;
    const open = async (name: string): Promise<Side> => {
      const gate = new NetworkGate();
      const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, reducedMotion: "reduce" });
      await gate.install(context);
      const page = await context.newPage();
      await page.goto(url);
      await editor.waitForStatus(page, /^Live$/);
      return { name, gate, context, page, node: await page.getByTestId("node").innerText() };
    };
    const [a, b] = await Promise.all([open("A"), open("B")]);
    await editor.add(a.page, "plan", '"shared"');
    await editor.waitForValue(b.page, "plan", "shared");

    // Both go offline and change the key. Which write is newer is up to the pages' clocks (each
    // corrected by its own estimate of the server's): the older one loses, and is the one held back.
    await a.gate.goOffline();
    await b.gate.goOffline();
    await editor.waitForStatus(a.page, /^Offline/);
    await editor.waitForStatus(b.page, /^Offline/);
    await editor.edit(a.page, "plan", "A's plan");
    await editor.edit(b.page, "plan", "B's plan");
    const [loser, winner] = (await pendingStamp(a, "clash", "plan")) < (await pendingStamp(b, "clash", "plan")) ? [a, b] : [b, a];

    // The loser comes back first, but its write travels slowly: the winner's reaches the server before it.
    await loser.gate.goOnline(loser.page, { holdWrites: true });
    await editor.waitForStatus(loser.page, /^Live$/);
    await eventually("the losing write held back", () => loser.gate.heldCount > 0);
    await winner.gate.goOnline(winner.page);
    await editor.waitForStatus(winner.page, /^Live$/);
    await settled(winner.page);
    // The loser learns its change lost; then its write arrives and the server records the conflict.
    await editor.waitForValue(loser.page, "plan", `${winner.name}'s plan`);
    const notice = loser.page.getByTestId("lost-notice");
    await notice.waitFor();
    expect(await notice.innerText()).toMatch(/Your change to plan was overridden: it was changed by web-/);
    loser.gate.release();
    await eventually("the server recorded the conflict", async () => {
      const listed = await runConflicts(server);
      return listed.some((line) => line.includes(loser.node));
    });

    // The notice links to the conflict: the page's own write, marked, with the write that beat it.
    await notice.getByRole("button", { name: "See the conflict" }).click();
    const lostPanel = loser.page.getByRole("dialog", { name: "Overridden writes" });
    const lostItem = lostPanel.locator("li.conflict", { hasText: "plan" });
    await lostItem.waitFor();
    expect(await lostItem.getAttribute("class")).toBe("conflict mine target");
    expect(await lostItem.innerText()).toMatch(new RegExp(`Overridden\\s+${loser.name}'s plan by you`));
    expect(await lostItem.innerText()).toMatch(new RegExp(`Won\\s+${winner.name}'s plan by web-`));

    // The winner sees the same conflict from its toolbar: the other page's write, not its own, was overridden.
    await winner.page.getByRole("button", { name: "Overridden writes" }).click();
    const wonItem = winner.page.getByRole("dialog", { name: "Overridden writes" }).locator("li.conflict", { hasText: "plan" });
    await wonItem.waitFor();
    expect(await wonItem.getAttribute("class")).toBe("conflict");
    expect(await wonItem.innerText()).toContain(`${loser.name}'s plan by ${loser.node}`);
    expect(await wonItem.innerText()).toMatch(new RegExp(`Won\\s+${winner.name}'s plan by you`));
    // "Only mine" leaves it out on the winner; the key links to its history.
    await winner.page.getByLabel("Only mine").check();
    await winner.page.getByTestId("conflicts-empty").waitFor();
    await winner.page.getByLabel("Only mine").uncheck();
    await wonItem.getByRole("button", { name: "History of plan" }).click();
    await history.waitForValues(winner.page, "plan's history", (values) => values.join("|") === `${winner.name}'s plan|shared`);
    await a.context.close();
    await b.context.close();
  });
});

/** One of two pages, each in its own browser context behind its own network gate. */
interface Side {
  readonly name: string;
  readonly gate: NetworkGate;
  readonly context: BrowserContext;
  readonly page: Page;
  /** The page's node id. */
  readonly node: string;
}

/** The timestamp of the side's unsent write of `key` in `doc` (pending writes are kept in localStorage, see storage.ts). */
async function pendingStamp(side: Side, doc: string, key: string): Promise<string> {
  return eventually(`the page's unsent write of ${key}`, async () => {
    const text = await side.page.evaluate((name) => localStorage.getItem(name), `syncd:v1:pending:${side.node}:${doc}`);
    const entries = JSON.parse(text ?? "[]") as { key: string; ts: string }[];
    return entries.find((entry) => entry.key === key)?.ts;
  });
}

/** `syncd conflicts` of the document clash, one line per overridden write. */
async function runConflicts(server: SyncdServer): Promise<string[]> {
  const home = mkdtempSync(join(tmpdir(), "syncd-web-e2e-home-"));
  try {
    return (await runCli(server, ["conflicts", "--doc", "clash"], home)).split("\n").filter((line) => line !== "");
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

describe("with a read-only token", () => {
  const server = new SyncdServer(["--token", "rw-secret", "--read-token", "ro-secret"]);

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
  });

  it("reads the history and the overridden writes, and says why Restore is off", async () => {
    const { client } = await RawClient.connect(server, "guarded", "e2e-writer", "rw-secret");
    await client.set("motto", "first");
    await client.set("motto", "second");
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/guarded`);
    await page.getByLabel("Token", { exact: true }).fill("ro-secret");
    await page.getByLabel("Token", { exact: true }).press("Enter");
    await editor.waitForStatus(page, /^Live$/);
    await editor.waitForValue(page, "motto", "second");
    await page.getByRole("button", { name: "History of motto", exact: true }).click();
    expect(await history.waitForValues(page, "both versions", (values) => values.length === 2)).toEqual(["second", "first"]);
    const restore = history.version(page, "first").getByRole("button", { name: /^Restore/ });
    expect(await restore.isDisabled()).toBe(true);
    expect(await restore.getAttribute("aria-describedby")).not.toBeNull();
    expect(await history.drawer(page).innerText()).toContain("Restore is off: this token is read-only");
    await page.keyboard.press("Escape");
    await page.getByRole("button", { name: "Overridden writes" }).click();
    await page.getByTestId("conflicts-empty").waitFor();
    client.close();
    await context.close();
  });
});

describe("with history off", () => {
  const server = new SyncdServer(["--history-retention", "0"]);

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
  });

  it("says in the drawer that the server keeps no history", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/nohist`);
    await editor.waitForStatus(page, /^Live$/);
    await editor.add(page, "k", "1");
    await settled(page);
    await page.getByRole("button", { name: "History of k", exact: true }).click();
    const empty = page.getByTestId("history-empty");
    await empty.waitFor();
    expect(await empty.innerText()).toContain("This server keeps no history (it runs with --history-retention 0)");
    await context.close();
  });
});
