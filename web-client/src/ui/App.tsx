/**
 * The syncd editor: one document (named by the URL) as a live table.
 *
 * The page connects to the server that served it (`/ws` on the same host), to
 * the servers saved in its settings, or to `?server=ws://…` (a comma-separated
 * list for the nodes of a cluster; see `servers.ts`). It claims a node id for
 * this tab, keeps unsent writes in the browser, and asks for a token when the
 * server wants one. A key's history opens in a drawer from its row, the
 * overridden writes from the toolbar or from the notice of a lost change.
 */

import { type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  BrowserPersistence,
  type Entry,
  MemoryPersistence,
  type Persistence,
  type SyncClient,
  type Write,
  claimNodeId,
  defaultServerUrl,
} from "../sync";
import { AddForm } from "./AddForm";
import { ConflictsPanel } from "./ConflictsPanel";
import { DocSwitcher } from "./DocSwitcher";
import { EntryTable } from "./EntryTable";
import { valueTextForSearch } from "./format";
import { HistoryDrawer } from "./HistoryDrawer";
import { LostNotice } from "./LostNotice";
import { docHash, useClientView, useDocFromHash, useRemoteHighlights, useSyncClient } from "./hooks";
import { ServerSettings } from "./ServerSettings";
import { type ServerSetting, loadSavedServers, saveServers, serverSetting } from "./servers";
import { StatusBar } from "./StatusBar";
import { TokenPrompt } from "./TokenPrompt";

const TOKEN_KEY = "syncd:v1:token";

type SortOrder = "key" | "key-desc" | "newest" | "oldest";

/** The drawer open over the document: a key's history, or the overridden writes (pointing out one of this tab's). */
type DrawerState = { readonly kind: "history"; readonly key: string } | { readonly kind: "conflicts"; readonly target: Write | null } | null;

/** localStorage, or a store that holds nothing when the browser refuses it. */
function localStore(): Pick<Storage, "getItem"> {
  try {
    return window.localStorage;
  } catch {
    return { getItem: () => null };
  }
}

function currentServers(): ServerSetting {
  return serverSetting(window.location.search, localStore(), defaultServerUrl());
}

/** Save the settings' server list; returns why it could not be, or null. */
function saveServerList(urls: readonly string[]): string | null {
  try {
    saveServers(window.localStorage, urls);
    return null;
  } catch (error) {
    return `The list could not be saved in this browser: ${(error as Error).message}`;
  }
}

function makePersistence(): Persistence {
  try {
    const probe = "syncd:v1:probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return new BrowserPersistence();
  } catch {
    return new MemoryPersistence(); // storage disabled: still works, but forgets on reload
  }
}

function storedToken(): string | null {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? window.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function App() {
  const [node, setNode] = useState<string | null>(null);
  const persistence = useMemo(() => makePersistence(), []);
  const [servers, setServers] = useState(currentServers);
  const onSaveServers = useCallback((urls: readonly string[]) => {
    const failure = saveServerList(urls);
    if (failure === null) setServers(currentServers());
    return failure;
  }, []);
  const doc = useDocFromHash();

  useEffect(() => {
    let cancelled = false;
    void claimNodeId()
      .catch(() => claimNodeId({ getItem: () => null, setItem: () => undefined } as unknown as Storage))
      .then((claimed) => {
        if (!cancelled) setNode(claimed);
      });
    return () => {
      cancelled = true;
    };
  }, []);

  useEffect(() => {
    document.title = `${doc} — syncd`;
  }, [doc]);

  if (node === null) {
    return <p className="loading">Loading…</p>;
  }
  const settings = (
    <ServerSettings setting={servers} saved={loadSavedServers(localStore())} fallback={defaultServerUrl()} onSave={onSaveServers} />
  );
  return <Editor node={node} doc={doc} urls={servers.urls} persistence={persistence} settings={settings} />;
}

function Editor(props: { node: string; doc: string; urls: readonly string[]; persistence: Persistence; settings: ReactNode }) {
  const [token, setToken] = useState(storedToken);
  const client = useSyncClient({ ...props, token });

  const onToken = useCallback(
    (value: string, remember: boolean) => {
      try {
        (remember ? window.localStorage : window.sessionStorage).setItem(TOKEN_KEY, value);
        (remember ? window.sessionStorage : window.localStorage).removeItem(TOKEN_KEY);
      } catch {
        // storage refused: the token lasts as long as the page
      }
      setToken(value);
      client?.setToken(value);
    },
    [client],
  );

  return (
    <>
      <a className="skip" href="#entries-title">
        Skip to the entries
      </a>
      <header className="top">
        <div className="brand">
          <h1>
            syncd <span className="doc-name">/ {props.doc}</span>
          </h1>
        </div>
        <DocSwitcher doc={props.doc} />
      </header>
      {client === null ? (
        <p className="loading">Loading…</p>
      ) : (
        <Document
          client={client}
          tokenRefused={token !== null}
          onToken={onToken}
          persistence={props.persistence}
          settings={props.settings}
        />
      )}
    </>
  );
}

function Document(props: {
  client: SyncClient;
  /** Whether the server refused a token we sent (rather than asking for one). */
  tokenRefused: boolean;
  onToken: (token: string, remember: boolean) => void;
  persistence: Persistence;
  /** The server settings, shown in the footer. */
  settings: ReactNode;
}) {
  const { client } = props;
  const view = useClientView(client);
  const highlights = useRemoteHighlights(client);
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<SortOrder>("key");
  const [announcement, setAnnouncement] = useState("");
  const announce = useCallback((message: string) => setAnnouncement(message), []);
  const [drawer, setDrawer] = useState<DrawerState>(null);
  const openHistory = useCallback((key: string) => setDrawer({ kind: "history", key }), []);
  const closeDrawer = useCallback(() => setDrawer(null), []);

  // Announce changes made by others, for screen readers (batched, polite).
  const lastCount = useRef(0);
  useEffect(() => {
    if (highlights.size > lastCount.current) {
      const keys = [...highlights.keys()];
      setAnnouncement(keys.length === 1 ? `${keys[0]} changed.` : `${keys.length} keys changed.`);
    }
    lastCount.current = highlights.size;
  }, [highlights]);

  // The entries change whenever the view's version does.
  // eslint-disable-next-line react-hooks/exhaustive-deps -- the client's state is mutable: view.version says when it changed
  const all = useMemo(() => client.entries(), [client, view.version]);
  const shown = useMemo(() => filterAndSort(all, filter, sort), [all, filter, sort]);
  const otherDocs = useMemo(
    () => props.persistence.pendingDocs(client.node).filter((doc) => doc !== client.doc),
    // eslint-disable-next-line react-hooks/exhaustive-deps -- stored pending writes change with the view's version
    [props.persistence, client, view.version],
  );
  const undeliverable = view.readonly && view.pending > 0;

  return (
    <main>
      <StatusBar view={view} />
      {view.status === "unauthorized" && <TokenPrompt rejected={props.tokenRefused} onToken={props.onToken} />}
      {view.status === "failed" && view.error && (
        <p className="notice error" role="alert">
          The server refused this connection: {view.error.message}{" "}
          <button type="button" onClick={() => client.reconnect()}>
            Try again
          </button>
        </p>
      )}
      {view.status !== "failed" && view.status !== "unauthorized" && view.error && view.error.code !== "connection" && (
        <p className="notice" role="status">
          {view.error.code === "forbidden"
            ? "This connection is read-only."
            : view.error.code === "storage"
              ? view.error.message
              : `The server said: ${view.error.message}`}{" "}
          <button type="button" onClick={() => client.clearError()}>
            Dismiss
          </button>
        </p>
      )}
      {view.refused && (
        <p className="notice error" role="alert">
          The server refused your {view.refused.keys.length === 1 ? "change to" : "changes to"}{" "}
          {view.refused.keys.map((key) => JSON.stringify(key)).join(", ")}: {view.refused.message}. It was undone: the
          server&apos;s value is shown.{" "}
          <button type="button" onClick={() => client.clearRefused()}>
            Dismiss
          </button>
        </p>
      )}
      {view.lost.length > 0 && (
        <LostNotice
          lost={view.lost}
          onOpenConflicts={(write) => setDrawer({ kind: "conflicts", target: write })}
          onOpenHistory={openHistory}
          onDismiss={() => client.clearLost()}
        />
      )}
      {undeliverable && (
        <p className="notice warning">
          {view.pending} unsent {view.pending === 1 ? "change" : "changes"} cannot be delivered with a read-only token.{" "}
          <button type="button" onClick={() => client.discardPending()}>
            Discard {view.pending === 1 ? "it" : "them"}
          </button>
        </p>
      )}
      {otherDocs.length > 0 && (
        <p className="notice">
          Unsent changes wait in{" "}
          {otherDocs.map((doc, i) => (
            <span key={doc}>
              {i > 0 && ", "}
              <a href={docHash(doc)}>{doc}</a>
            </span>
          ))}
          : open {otherDocs.length === 1 ? "it" : "them"} to send them.
        </p>
      )}
      {view.readonly ? (
        <p className="notice readonly-note" data-testid="readonly-note">
          Read-only: this token can watch the document but not change it.
        </p>
      ) : (
        view.status !== "unauthorized" && <AddForm client={client} onSaved={(key) => announce(`Saved ${key}.`)} />
      )}
      <div className="toolbar" role="group" aria-label="Filter, sort and overridden writes">
        <div className="field">
          <label htmlFor="filter">Filter</label>
          <input
            id="filter"
            type="search"
            value={filter}
            placeholder="key or value"
            onChange={(event) => setFilter(event.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor="sort">Sort by</label>
          <select id="sort" value={sort} onChange={(event) => setSort(event.target.value as SortOrder)}>
            <option value="key">Key, A → Z</option>
            <option value="key-desc">Key, Z → A</option>
            <option value="newest">Last changed, newest first</option>
            <option value="oldest">Last changed, oldest first</option>
          </select>
        </div>
        <button
          type="button"
          className="toolbar-end"
          aria-expanded={drawer?.kind === "conflicts"}
          onClick={() => setDrawer(drawer?.kind === "conflicts" ? null : { kind: "conflicts", target: null })}
        >
          Overridden writes
        </button>
      </div>
      <EntryTable
        client={client}
        entries={shown}
        total={all.length}
        readonly={view.readonly}
        highlights={highlights}
        waiting={view.since === null && view.status !== "live"}
        onAnnounce={announce}
        onOpenHistory={openHistory}
      />
      {drawer?.kind === "history" && (
        <HistoryDrawer key={drawer.key} client={client} entryKey={drawer.key} onAnnounce={announce} onClose={closeDrawer} />
      )}
      {drawer?.kind === "conflicts" && (
        <ConflictsPanel client={client} target={drawer.target} onOpenHistory={openHistory} onClose={closeDrawer} />
      )}
      <footer className="foot">
        <span data-testid="version">syncd {__SYNCD_VERSION__}</span>
        {view.since && (
          <span>
            Seen up to seq <code data-testid="seq">{view.since.seq}</code>
          </span>
        )}
        {props.settings}
      </footer>
      <div className="sr-only" aria-live="polite">
        {announcement}
      </div>
    </main>
  );
}

function filterAndSort(entries: readonly Entry[], filter: string, sort: SortOrder): Entry[] {
  const needle = filter.trim().toLowerCase();
  const matching =
    needle === ""
      ? [...entries]
      : entries.filter(
          (entry) => entry.key.toLowerCase().includes(needle) || valueTextForSearch(entry).toLowerCase().includes(needle),
        );
  const byKey = (a: Entry, b: Entry): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  switch (sort) {
    case "key":
      return matching.sort(byKey);
    case "key-desc":
      return matching.sort((a, b) => byKey(b, a));
    case "newest":
      return matching.sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : byKey(a, b)));
    case "oldest":
      return matching.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : byKey(a, b)));
  }
}
