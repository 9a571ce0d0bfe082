/** React glue: the document named by the URL, a client per document, highlights of remote changes. */

import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { type ClientView, type Persistence, SyncClient, isDocName } from "../sync";

const DEFAULT_DOC = "default";

/** The document named by the URL: `#/doc/NAME` (anything else is the default document). */
export function docFromHash(hash: string): string {
  const match = /^#\/doc\/(.+)$/.exec(hash);
  if (match === null) return DEFAULT_DOC;
  let name: string;
  try {
    name = decodeURIComponent(match[1]!);
  } catch {
    return DEFAULT_DOC;
  }
  return isDocName(name) ? name : DEFAULT_DOC;
}

/** The URL fragment of a document. */
export function docHash(doc: string): string {
  return `#/doc/${encodeURIComponent(doc)}`;
}

/** The document the URL names, following `hashchange`. */
export function useDocFromHash(): string {
  const [doc, setDoc] = useState(() => docFromHash(window.location.hash));
  useEffect(() => {
    const update = (): void => setDoc(docFromHash(window.location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return doc;
}

/** A started client for `doc` (null until it exists), stopped when the document or the servers change or the component goes. */
export function useSyncClient(options: {
  doc: string;
  node: string;
  urls: readonly string[];
  token: string | null;
  persistence: Persistence;
}): SyncClient | null {
  const { doc, node, persistence } = options;
  // The list as one text, so that an equal list (a new array) keeps the client. URLs hold no newline.
  const servers = options.urls.join("\n");
  const token = useRef(options.token);
  // Declared first, so it has run by the time the effect below reads the token.
  useEffect(() => {
    token.current = options.token;
  }, [options.token]);
  const [client, setClient] = useState<SyncClient | null>(null);
  useEffect(() => {
    const next = new SyncClient({ doc, node, url: servers.split("\n"), token: token.current, persistence });
    setClient(next);
    void next.start();
    return () => next.stop();
  }, [doc, node, servers, persistence]);
  return client !== null && client.doc === doc && client.node === node && client.urls.join("\n") === servers ? client : null;
}

/** The client's view, re-rendering on change. */
export function useClientView(client: SyncClient): ClientView {
  const subscribe = useCallback((listener: () => void) => client.subscribe(listener), [client]);
  const view = useCallback(() => client.view(), [client]);
  return useSyncExternalStore(subscribe, view, view);
}

/** Keys changed by others in the last `ms` milliseconds, with who changed them. */
export function useRemoteHighlights(client: SyncClient, ms = 2000): ReadonlyMap<string, string> {
  const [recent, setRecent] = useState<ReadonlyMap<string, string>>(new Map());
  const [shownClient, setShownClient] = useState(client);
  if (client !== shownClient) {
    // Another document's client: its highlights start empty (adjusted during render, not in an effect).
    setShownClient(client);
    setRecent(new Map());
  }
  useEffect(() => {
    const timers = new Set<ReturnType<typeof setTimeout>>();
    const off = client.onChanges((changes) => {
      const remote = changes.filter((change) => change.source === "remote");
      if (remote.length === 0) return;
      setRecent((old) => {
        const next = new Map(old);
        for (const change of remote) next.set(change.key, change.origin ?? "");
        return next;
      });
      const timer = setTimeout(() => {
        timers.delete(timer);
        setRecent((old) => {
          const next = new Map(old);
          for (const change of remote) next.delete(change.key);
          return next;
        });
      }, ms);
      timers.add(timer);
    });
    return () => {
      off();
      for (const timer of timers) clearTimeout(timer);
    };
  }, [client, ms]);
  return recent;
}

/** The current time, updated every `ms` milliseconds while `active`. */
export function useNow(active: boolean, ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    // eslint-disable-next-line react-hooks/set-state-in-effect -- the clock is the external system followed: read it as the countdown starts
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [active, ms]);
  return now;
}
