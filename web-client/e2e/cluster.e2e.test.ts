// The editor given several servers, in real headless Chromium against two real
// `syncd serve` nodes: it moves to the next when one is killed, and back.
// The nodes are single servers (no shared store): each has the writes made on
// it, which also shows that a move brings the new node's snapshot.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawClient, SyncdServer, editor, eventually, launchBrowser, openPage } from "./harness";

let browser: Browser;
const first = new SyncdServer();
let second: SyncdServer;

beforeAll(async () => {
  browser = await launchBrowser();
  await first.start();
  // The page is served by the first node: the second checks the Origin header, so it must allow that page.
  second = new SyncdServer(["--allowed-origin", first.httpUrl]);
  await second.start();
});

afterAll(async () => {
  await browser?.close();
  await first.dispose();
  await second?.dispose();
});

/** The server node id of `server`, from its welcome. */
async function nodeOf(server: SyncdServer): Promise<string> {
  const { client } = await RawClient.connect(server, "moving", `e2e-probe-${Math.floor(Math.random() * 1e9)}`);
  client.close();
  return String(client.welcome.node);
}

describe("with two servers", () => {
  it("takes a list of URLs in its settings, moves to the second when the first is killed, and back", async () => {
    const [nodeA, nodeB] = [await nodeOf(first), await nodeOf(second)];
    expect(nodeA).not.toBe(nodeB);
    const { context, page } = await openPage(browser, `${first.httpUrl}/#/doc/moving`);
    const server = () => page.getByTestId("server").innerText();
    await editor.waitForStatus(page, /^Live$/);
    expect(await server()).toBe(`node ${nodeA} (${first.wsUrl})`);

    // The settings refuse what is not a WebSocket URL, then take both nodes.
    await page.getByRole("button", { name: "Servers…" }).click();
    const urls = page.getByLabel("Server URLs", { exact: true });
    await urls.fill(`${first.wsUrl}\n${first.httpUrl}/ws`);
    await page.getByRole("button", { name: "Save" }).click();
    await expect(page.getByRole("region", { name: "Servers" }).getByRole("alert").innerText()).resolves.toMatch(
      /not a WebSocket URL: it must start with ws:\/\/ or wss:\/\//,
    );
    await urls.fill(`${first.wsUrl}, ${second.wsUrl}`);
    await page.getByRole("button", { name: "Save" }).click();
    await eventually("the panel closes", async () => (await page.getByLabel("Server URLs", { exact: true }).count()) === 0);
    expect(await page.evaluate(() => localStorage.getItem("syncd:v1:servers"))).toBe(JSON.stringify([first.wsUrl, second.wsUrl]));
    await editor.waitForStatus(page, /^Live$/);
    expect(await server()).toBe(`node ${nodeA} (${first.wsUrl})`);
    await editor.add(page, "on-a", '"written on A"');
    await eventually("acknowledged by A", async () => (await editor.pending(page)).includes('All changes sent'));

    // The first node dies: the page is on the second at once, live, and writes there.
    await first.kill();
    await eventually(`the page on ${nodeB}`, async () => (await server()) === `node ${nodeB} (${second.wsUrl})`);
    await editor.waitForStatus(page, /^Live$/);
    // B's snapshot lacks A's acknowledged write: the contract drops it (it is not pending).
    await editor.waitForValue(page, "on-a", null);
    await editor.add(page, "on-b", '"written on B"');
    await eventually("acknowledged by B", async () => (await editor.pending(page)).includes('All changes sent'));
    expect(await RawClient.snapshot(second, "moving")).toEqual({ "on-b": "written on B" });

    // The first node comes back; the page stays where it is live until that node goes.
    await first.start();
    expect(await RawClient.snapshot(first, "moving")).toEqual({ "on-a": "written on A" });
    expect(await server()).toBe(`node ${nodeB} (${second.wsUrl})`);
    await second.kill();
    await eventually(`the page back on ${nodeA}`, async () => (await server()) === `node ${nodeA} (${first.wsUrl})`);
    await editor.waitForStatus(page, /^Live$/);
    await editor.waitForValue(page, "on-a", "written on A");
    await editor.add(page, "back-on-a", "true");
    await eventually("acknowledged by A again", async () => (await editor.pending(page)).includes('All changes sent'));
    expect(await RawClient.snapshot(first, "moving")).toEqual({ "on-a": "written on A", "back-on-a": true });
    await context.close();
  });

  it("takes a comma-separated list in ?server=", async () => {
    await second.stop(); // whatever the test before left running
    await second.start();
    const query = encodeURIComponent(`${second.wsUrl},${first.wsUrl}`);
    const { context, page } = await openPage(browser, `${first.httpUrl}/?server=${query}#/doc/moving`);
    await editor.waitForStatus(page, /^Live$/);
    expect(await page.getByTestId("server").innerText()).toBe(`node ${await nodeOf(second)} (${second.wsUrl})`);
    await context.close();
  });
});
