// The page's server list: the parser shared by the settings form and
// `?server=`, what is saved, and which list wins.
import { describe, expect, it } from "vitest";
import { SERVERS_KEY, loadSavedServers, parseServerList, saveServers, serverSetting } from "../src/ui/servers";

/** localStorage's interface over a Map (the browser's API, not a part of ours). */
function memoryStorage(items: Record<string, string> = {}): Pick<Storage, "getItem" | "setItem" | "removeItem"> {
  const map = new Map(Object.entries(items));
  return {
    getItem: (key) => map.get(key) ?? null,
    setItem: (key, value) => void map.set(key, value),
    removeItem: (key) => void map.delete(key),
  };
}

const OWN = "ws://own.test/ws";

describe("parseServerList", () => {
  it("reads one URL per line or comma-separated, skipping blanks and repeats", () => {
    expect(parseServerList(" ws://127.0.0.1:8765/ws \n\nwss://b.test/ws, ws://127.0.0.1:8765/ws,")).toEqual({
      urls: ["ws://127.0.0.1:8765/ws", "wss://b.test/ws"],
    });
    expect(parseServerList("")).toEqual({ urls: [] });
  });

  it.each([
    ["http://127.0.0.1:8765/ws", /not a WebSocket URL: it must start with ws:\/\/ or wss:\/\//],
    ["127.0.0.1:8765", /not a WebSocket URL|not a URL/],
    ["ws://", /not a URL/],
    ["ws://a.test/ws#x", /#fragment/],
  ])("refuses %s, saying why", (text, message) => {
    const parsed = parseServerList(`ws://ok.test/ws\n${text}`);
    expect("error" in parsed && parsed.error).toMatch(message);
  });

  it("refuses a list longer than anyone means", () => {
    const many = Array.from({ length: 40 }, (_, i) => `ws://n${i}.test/ws`).join(",");
    expect(parseServerList(many)).toEqual({ error: expect.stringMatching(/40 servers/) as string });
  });
});

describe("saved servers", () => {
  it("saves a list, and an empty list goes back to the default", () => {
    const storage = memoryStorage();
    saveServers(storage, ["ws://a.test/ws", "ws://b.test/ws"]);
    expect(loadSavedServers(storage)).toEqual(["ws://a.test/ws", "ws://b.test/ws"]);
    saveServers(storage, []);
    expect(storage.getItem(SERVERS_KEY)).toBeNull();
    expect(loadSavedServers(storage)).toBeNull();
  });

  it.each(["not json", '"ws://a.test/ws"', '[1, 2]', '["http://a.test/"]', "[]"])("ignores a damaged saved value %s", (raw) => {
    expect(loadSavedServers(memoryStorage({ [SERVERS_KEY]: raw }))).toBeNull();
  });
});

describe("serverSetting", () => {
  const saved = memoryStorage({ [SERVERS_KEY]: JSON.stringify(["ws://saved.test/ws"]) });

  it("is the page's own server when nothing is set", () => {
    expect(serverSetting("", memoryStorage(), OWN)).toEqual({ urls: [OWN], source: "default", problem: null });
  });

  it("prefers the saved list to the default, and ?server= to both", () => {
    expect(serverSetting("", saved, OWN)).toEqual({ urls: ["ws://saved.test/ws"], source: "saved", problem: null });
    expect(serverSetting("?server=ws://q1.test/ws,ws://q2.test/ws", saved, OWN)).toEqual({
      urls: ["ws://q1.test/ws", "ws://q2.test/ws"],
      source: "query",
      problem: null,
    });
    expect(serverSetting(`?server=${encodeURIComponent("ws://q.test/ws")}`, saved, OWN).urls).toEqual(["ws://q.test/ws"]);
  });

  it("says why a bad ?server= was not used, and uses the rest", () => {
    expect(serverSetting("?server=ws://q.test/ws,http://q.test/", saved, OWN)).toEqual({
      urls: ["ws://saved.test/ws"],
      source: "saved",
      problem: expect.stringMatching(/\?server= was not used.*must start with ws:\/\//) as string,
    });
    expect(serverSetting("?server=", memoryStorage(), OWN)).toMatchObject({ urls: [OWN], problem: expect.stringMatching(/names no server/) as string });
  });
});
