// Takes docs/web-client.png: the editor live on a document that a TUI, the CLI
// and another browser are editing too. Run with `npm run screenshot` (after a build).
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { REPO, RawClient, SyncdServer, editor, eventually, launchBrowser, openPage } from "./harness";

const server = new SyncdServer();

beforeAll(async () => {
  await server.start();
});

afterAll(async () => {
  await server.dispose();
});

it("takes the screenshot", async () => {
  const browser = await launchBrowser();
  try {
    const tui = (await RawClient.connect(server, "team", "tui-3f9a")).client;
    const cli = (await RawClient.connect(server, "team", "cli-9d21")).client;
    await tui.set("app.title", "Team board");
    await cli.set("release", "2.4.1");
    await tui.set("limits", { max_users: 50, burst: 5 });
    await cli.set("tags", ["sync", "crdt", "offline"]);
    cli.close();

    const other = await openPage(browser, `${server.httpUrl}/#/doc/team`);
    const { page } = await openPage(browser, `${server.httpUrl}/#/doc/team`, { width: 1200, height: 760 });
    await editor.waitForStatus(page, /^Live$/);
    await editor.waitForStatus(other.page, /^Live$/);
    await editor.add(page, "motd", "Deploy freeze on Friday from 17:00", "text");
    await editor.add(other.page, "retries", "3");
    await editor.add(page, "feature.dark-mode", "true");
    await eventually("all sent", async () => (await editor.pending(page)).includes("All changes sent"));
    await tui.set("status", "reviewing");
    await editor.waitForValue(page, "status", "reviewing"); // highlighted as a remote change
    await page.mouse.move(0, 0);
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await page.screenshot({ path: join(REPO, "docs", "web-client.png"), fullPage: true });
    if (process.env.SYNCD_SCREENSHOT_NARROW) {
      await page.setViewportSize({ width: 380, height: 760 });
      await page.screenshot({ path: process.env.SYNCD_SCREENSHOT_NARROW, fullPage: true });
    }
    tui.close();
  } finally {
    await browser.close();
  }
});
