/**
 * Which servers the page connects to: the `?server=` query (one URL or a
 * comma-separated list), else the list saved in the settings (localStorage),
 * else `/ws` on the host that served the page. Every list is read by one
 * parser, which accepts `ws://` and `wss://` URLs only and says why it refuses
 * anything else.
 */

/** Where the page's server list came from. */
export type ServerSource = "query" | "saved" | "default";

export interface ServerSetting {
  readonly urls: readonly string[];
  readonly source: ServerSource;
  /** Why a list given to the page (query or saved) was not used, if one was not. */
  readonly problem: string | null;
}

export const SERVERS_KEY = "syncd:v1:servers";

/** More nodes than anyone lists by hand: a longer list is a mistake, said so. */
const MAX_SERVERS = 32;

/** The WebSocket URLs in `text` (one per line or comma-separated; blanks and repeats skipped), or why it is not such a list. */
export function parseServerList(text: string): { urls: string[] } | { error: string } {
  const urls: string[] = [];
  for (const item of text.split(/[\n,]/)) {
    const trimmed = item.trim();
    if (trimmed === "") continue;
    const checked = checkServerUrl(trimmed);
    if ("error" in checked) return checked;
    if (!urls.includes(checked.url)) urls.push(checked.url);
  }
  if (urls.length > MAX_SERVERS) return { error: `That is ${urls.length} servers; at most ${MAX_SERVERS} can be listed.` };
  return { urls };
}

function checkServerUrl(text: string): { url: string } | { error: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { error: `“${text}” is not a URL: write it as ws://HOST:PORT/ws or wss://HOST/ws.` };
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    return { error: `“${text}” is not a WebSocket URL: it must start with ws:// or wss://.` };
  }
  if (url.hash !== "") return { error: `“${text}” has a #fragment, which a WebSocket URL cannot have.` };
  return { url: url.href };
}

/** The list saved in the settings, or null when none is (or it cannot be read). */
export function loadSavedServers(storage: Pick<Storage, "getItem">): string[] | null {
  let raw: string | null;
  try {
    raw = storage.getItem(SERVERS_KEY);
  } catch {
    return null; // storage disabled
  }
  if (raw === null) return null;
  let saved: unknown;
  try {
    saved = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!Array.isArray(saved) || !saved.every((item) => typeof item === "string")) return null;
  const parsed = parseServerList(saved.join("\n"));
  return "urls" in parsed && parsed.urls.length > 0 ? parsed.urls : null;
}

/** Save `urls` as the page's servers; an empty list goes back to the page's own server. Throws when storage refuses. */
export function saveServers(storage: Pick<Storage, "setItem" | "removeItem">, urls: readonly string[]): void {
  if (urls.length === 0) storage.removeItem(SERVERS_KEY);
  else storage.setItem(SERVERS_KEY, JSON.stringify(urls));
}

/** The servers this page uses: `?server=` in `search`, else the saved list, else `fallback`. */
export function serverSetting(search: string, storage: Pick<Storage, "getItem">, fallback: string): ServerSetting {
  const saved = loadSavedServers(storage);
  const otherwise: ServerSetting = saved === null ? { urls: [fallback], source: "default", problem: null } : { urls: saved, source: "saved", problem: null };
  const query = new URLSearchParams(search).get("server");
  if (query === null) return otherwise;
  const parsed = parseServerList(query);
  if ("error" in parsed) return { ...otherwise, problem: `The page's ?server= was not used. ${parsed.error}` };
  if (parsed.urls.length === 0) return { ...otherwise, problem: "The page's ?server= was not used: it names no server." };
  return { urls: parsed.urls, source: "query", problem: null };
}
