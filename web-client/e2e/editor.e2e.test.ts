// The editor in real headless Chromium against a real `syncd serve` serving the built syncd/web/.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawClient, SyncdServer, cliHasSet, editor, eventually, launchBrowser, openPage, runCli, syncdVersion } from "./harness";

let browser: Browser;

beforeAll(async () => {
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
});

describe("with one server", () => {
  const server = new SyncdServer();
  const home = mkdtempSync(join(tmpdir(), "syncd-web-e2e-home-"));

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
    rmSync(home, { recursive: true, force: true });
  });

  it("serves the editor at /, which goes live on the document the URL names", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/first`);
    await editor.waitForStatus(page, /^Live$/);
    expect(await page.locator("h1").innerText()).toContain("first");
    expect(await page.title()).toBe("first — syncd");
    // The footer's version is pyproject.toml's, as `syncd --version` says it.
    expect(await page.getByTestId("version").innerText()).toBe(syncdVersion());
    await context.close();
  });

  it("two pages on one document converge as both edit", async () => {
    const url = `${server.httpUrl}/#/doc/converge`;
    const a = await openPage(browser, url);
    const b = await openPage(browser, url);
    await editor.waitForStatus(a.page, /^Live$/);
    await editor.waitForStatus(b.page, /^Live$/);
    // Each sees the other online.
    const nodeA = await a.page.getByTestId("node").innerText();
    const nodeB = await b.page.getByTestId("node").innerText();
    expect(nodeA).not.toBe(nodeB);
    await eventually("A sees B online", async () => (await a.page.getByTestId("peers").innerText()).includes(nodeB));
    await eventually("B sees A online", async () => (await b.page.getByTestId("peers").innerText()).includes(nodeA));

    await editor.add(a.page, "title", '"from A"');
    await editor.add(b.page, "count", "41");
    await editor.add(b.page, "note", "plain text, no quotes", "text");
    await editor.waitForValue(b.page, "title", "from A");
    await editor.waitForValue(a.page, "count", "41");
    await editor.waitForValue(a.page, "note", "plain text, no quotes");

    // Both edit the same keys at about the same time, then one deletes.
    await Promise.all([editor.edit(a.page, "count", "42"), editor.edit(b.page, "count", "43")]);
    await Promise.all([editor.edit(a.page, "title", '{"text": "A wins?"}', "json"), editor.edit(b.page, "title", '"B wins?"', "json")]);
    await editor.remove(a.page, "note");
    await editor.add(b.page, "list", "[1, 2, 3]");

    const settled = await eventually("both pages show the same table", async () => {
      const [ta, tb] = await Promise.all([editor.table(a.page), editor.table(b.page)]);
      const pa = await editor.pending(a.page);
      const pb = await editor.pending(b.page);
      return JSON.stringify(ta) === JSON.stringify(tb) && pa.includes("All changes sent") && pb.includes("All changes sent") && ta;
    });
    expect(Object.keys(settled).sort()).toEqual(["count", "list", "title"]);
    expect(["42", "43"]).toContain(settled.count);
    // And the server holds exactly what the pages show.
    const stored = await RawClient.snapshot(server, "converge");
    expect(Object.keys(stored).sort()).toEqual(["count", "list", "title"]);
    expect(String(stored.count)).toBe(settled.count);
    // A remote change flashed in the other page: it names its writer.
    expect(await b.page.locator("tr[data-key=list] td.who").innerText()).toContain("you");
    expect(await a.page.locator("tr[data-key=list] td.who").innerText()).toContain(nodeB);
    await a.context.close();
    await b.context.close();
  });

  it("shows a write from the command line", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/cli`);
    await editor.waitForStatus(page, /^Live$/);
    if (cliHasSet()) {
      await runCli(server, ["set", "--doc", "cli", "from-cli", "hello from the terminal"], home);
      await runCli(server, ["set", "--doc", "cli", "--json", "config", '{"retries": 3}'], home);
    } else {
      // `syncd set` is not in this checkout yet: write the same entries with raw ops frames.
      const { client } = await RawClient.connect(server, "cli", "cli-e2e");
      await client.set("from-cli", "hello from the terminal");
      await client.set("config", { retries: 3 });
      client.close();
    }
    await editor.waitForValue(page, "config", '{"retries":3}');
    // The row flashes as a change by someone else, and names its writer.
    expect(await page.locator('tr[data-key="config"]').getAttribute("class")).toContain("flash");
    expect(await page.locator('tr[data-key="config"] td.who').innerText()).not.toContain("you");
    await editor.waitForValue(page, "from-cli", "hello from the terminal");
    await eventually("the highlight fades", async () => (await page.locator("tr.flash").count()) === 0);
    await context.close();
  });

  it("validates JSON, offers a plain-string mode, filters and sorts", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/forms`);
    await editor.waitForStatus(page, /^Live$/);
    const form = page.locator("form.add-form");
    await form.getByLabel("Key", { exact: true }).fill("bad");
    await form.getByLabel("Value", { exact: true }).fill("{not json");
    await form.getByRole("button", { name: "Add" }).click();
    await expect(form.locator(".error-text").innerText()).resolves.toMatch(/not valid JSON/);
    expect(await editor.value(page, "bad")).toBeNull();
    await form.getByRole("radio", { name: "Text" }).check();
    await form.getByRole("button", { name: "Add" }).click();
    await editor.waitForValue(page, "bad", "{not json");
    await editor.add(page, "alpha", "1");
    await editor.add(page, "beta", '"two"');
    await page.getByLabel("Filter", { exact: true }).fill("two");
    await eventually("the filter keeps one row", async () => JSON.stringify(Object.keys(await editor.table(page))) === '["beta"]');
    await page.getByLabel("Filter", { exact: true }).fill("");
    await page.getByLabel("Sort by").selectOption("key-desc");
    expect(Object.keys(await editor.table(page))).toEqual(["beta", "bad", "alpha"]);
    await page.getByLabel("Sort by").selectOption("newest");
    expect(Object.keys(await editor.table(page))).toEqual(["beta", "alpha", "bad"]);
    await context.close();
  });

  it("switches documents through the URL", async () => {
    const { client } = await RawClient.connect(server, "other", "e2e-writer");
    await client.set("only-in-other", true);
    client.close();
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/first`);
    await editor.waitForStatus(page, /^Live$/);
    expect(await editor.value(page, "only-in-other")).toBeNull();
    await page.getByLabel("Document", { exact: true }).fill("other");
    await page.getByLabel("Document", { exact: true }).press("Enter");
    await eventually("the URL names the document", () => page.url().endsWith("#/doc/other"));
    await editor.waitForValue(page, "only-in-other", "true");
    await page.goBack();
    await eventually("back to the first document", async () => (await editor.value(page, "only-in-other")) === null && /^Live$/.test(await editor.status(page)));
    await context.close();
  });

  it("gives each tab of one browser its own node id, and a reloaded tab its old one", async () => {
    const url = `${server.httpUrl}/#/doc/tabs`;
    const { context, page: first } = await openPage(browser, url);
    const second = await context.newPage();
    await second.goto(url);
    await editor.waitForStatus(first, /^Live$/);
    await editor.waitForStatus(second, /^Live$/);
    const [one, two] = [await first.getByTestId("node").innerText(), await second.getByTestId("node").innerText()];
    expect(one).not.toBe(two);
    await eventually("each sees the other", async () => (await first.getByTestId("peers").innerText()).includes(two));
    for (let i = 0; i < 3; i++) {
      await first.reload();
      await editor.waitForStatus(first, /^Live$/);
      expect(await first.getByTestId("node").innerText()).toBe(one);
    }
    await context.close();
  });

  it("writes from a browser whose clock is minutes off, ahead or behind", async () => {
    for (const skew of [+5 * 60_000, -5 * 60_000]) {
      const context = await browser.newContext();
      await context.clock.install({ time: Date.now() + skew }); // the clock runs on from there
      const page = await context.newPage();
      await page.goto(`${server.httpUrl}/#/doc/skewed`);
      await editor.waitForStatus(page, /^Live$/);
      await editor.add(page, `skew${skew}`, String(skew));
      await eventually("the server accepts it", async () => (await editor.pending(page)).includes("All changes sent"));
      const stored = await RawClient.snapshot(server, "skewed");
      expect(stored[`skew${skew}`]).toBe(skew);
      // Stamped by the server's clock, not the browser's.
      const when = await page.locator(`tr[data-key="skew${skew}"] time`).getAttribute("datetime");
      expect(Math.abs(Date.parse(when ?? "") - Date.now())).toBeLessThan(30_000);
      await context.close();
    }
  });

  it("is usable on a narrow screen", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/converge`, { width: 380, height: 760 });
    await editor.waitForStatus(page, /^Live$/);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await editor.edit(page, "count", "7");
    await editor.waitForValue(page, "count", "7");
    await context.close();
  });

  it("can be driven by the keyboard alone", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/keyboard`);
    await editor.waitForStatus(page, /^Live$/);
    await page.locator("body").focus();
    // Tab from the top: skip link, document field, Open, then the add form's key field.
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      await page.keyboard.press("Tab");
      order.push(await page.evaluate(() => {
        const el = document.activeElement as HTMLInputElement | null;
        return el?.getAttribute("aria-label") ?? el?.labels?.[0]?.innerText ?? el?.innerText ?? "";
      }));
    }
    expect(order).toEqual(["Skip to the entries", "Document", "Open", "Key"]);
    await page.keyboard.type("typed");
    await page.keyboard.press("Tab"); // JSON radio
    await page.keyboard.press("Tab"); // the value
    await page.keyboard.type('"by keyboard"');
    await page.keyboard.press("Control+Enter");
    await editor.waitForValue(page, "typed", "by keyboard");
    // Edit: the button opens the editor with focus in it; Escape cancels and focus goes back.
    await page.getByRole("button", { name: "Edit typed" }).focus();
    await page.keyboard.press("Enter");
    await eventually("focus in the editor", async () => (await page.evaluate(() => document.activeElement?.tagName)) === "TEXTAREA");
    await page.keyboard.press("Escape");
    await eventually("focus back on Edit", async () => (await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))) === "Edit typed");
    await context.close();
  });
});

describe("when the server goes down", () => {
  const server = new SyncdServer();

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
  });

  it("keeps an edit, survives a reload, and delivers it when the server is back", async () => {
    const url = `${server.httpUrl}/#/doc/offline`;
    const { context, page } = await openPage(browser, url);
    await editor.waitForStatus(page, /^Live$/);
    await editor.add(page, "before", '"online"');
    await eventually("the first write is acknowledged", async () => (await editor.pending(page)).includes("All changes sent"));
    // Nothing is pending, but the clock's high-water mark stays (a reload must stamp above the acknowledged write).
    const kept = await page.evaluate(() =>
      Object.keys(localStorage)
        .filter((key) => key.endsWith(":offline"))
        .map((key) => [key.replace(/:web-[^:]+:/, ":NODE:"), localStorage.getItem(key)]),
    );
    expect(kept).toEqual([["syncd:v1:clock:NODE:offline", expect.stringMatching(/^[0-9]{13}-[0-9]{5}-web-[0-9a-f]{10}$/)]]);
    // The service worker has kept the app shell, so the page loads while the server is down.
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });

    await server.stop();
    await editor.waitForStatus(page, /^Offline/);
    await editor.add(page, "during", '{"written": "offline"}');
    await editor.edit(page, "before", "changed offline"); // a string: the editor opens in Text mode
    await eventually("two unsent changes", async () => (await editor.pending(page)).includes("2 unsent changes"));

    // The page is reloaded while the server is still down: the edits are still there.
    await page.reload();
    await editor.waitForStatus(page, /^(Offline|Connecting)/);
    await editor.waitForValue(page, "during", '{"written":"offline"}');
    await editor.waitForValue(page, "before", "changed offline");
    expect(await editor.pending(page)).toMatch(/2 unsent changes/);

    // The server comes back on the same port: the page reconnects and delivers.
    await server.start();
    await editor.waitForStatus(page, /^Live$/);
    await eventually("everything sent", async () => (await editor.pending(page)).includes("All changes sent"));
    const stored = await RawClient.snapshot(server, "offline");
    expect(stored).toEqual({ before: "changed offline", during: { written: "offline" } });
    await context.close();
  });
});

describe("with tokens", () => {
  const server = new SyncdServer(["--token", "rw-secret", "--read-token", "ro-secret"]);

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.dispose();
  });

  it("asks for a token, refuses a wrong one, and is read-only with the read token", async () => {
    const { client } = await RawClient.connect(server, "guarded", "e2e-writer", "rw-secret");
    await client.set("existing", "visible to readers");

    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/guarded`);
    await editor.waitForStatus(page, /^Token needed$/);
    const prompt = page.getByRole("region", { name: "This server needs a token" });
    await prompt.getByLabel("Token", { exact: true }).fill("wrong");
    await prompt.getByRole("button", { name: "Connect" }).click();
    await eventually("the wrong token is refused", async () => (await prompt.getByRole("alert").count()) > 0);
    await prompt.getByLabel("Token", { exact: true }).fill("ro-secret");
    await prompt.getByRole("button", { name: "Connect" }).click();
    await editor.waitForStatus(page, /^Live$/);

    expect(await page.getByTestId("readonly").innerText()).toBe("Read-only");
    await editor.waitForValue(page, "existing", "visible to readers");
    expect(await page.locator("form.add-form").count()).toBe(0);
    expect(await page.getByRole("button", { name: /^Edit / }).count()).toBe(0);
    expect(await page.getByRole("button", { name: /^Delete / }).count()).toBe(0);

    // Live updates still arrive.
    await client.set("later", 2);
    await editor.waitForValue(page, "later", "2");

    // The token is remembered across a reload.
    await page.reload();
    await editor.waitForStatus(page, /^Live$/);
    expect(await page.getByTestId("readonly").count()).toBe(1);
    client.close();
    await context.close();
  });

  it("edits with the read-write token", async () => {
    const { context, page } = await openPage(browser, `${server.httpUrl}/#/doc/guarded`);
    await editor.waitForStatus(page, /^Token needed$/);
    await page.getByLabel("Token", { exact: true }).fill("rw-secret");
    await page.getByLabel("Token", { exact: true }).press("Enter");
    await editor.waitForStatus(page, /^Live$/);
    await editor.add(page, "by-web", "true");
    await eventually("acknowledged", async () => (await editor.pending(page)).includes("All changes sent"));
    expect((await RawClient.snapshot(server, "guarded", "ro-secret"))["by-web"]).toBe(true);
    await context.close();
  });
});
