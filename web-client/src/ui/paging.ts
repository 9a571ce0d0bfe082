/**
 * A list read from the server page by page (a key's history, the overridden
 * writes): the first page when the list is shown, the next ones on "Older",
 * and all of what is shown again on `refresh` (a new version came in).
 */

import { useCallback, useEffect, useRef, useState } from "react";
import { RequestError } from "../sync";

/** One page: its items and the cursor of the next (null on the last). */
export interface Page<T, C> {
  readonly items: readonly T[];
  readonly next: C | null;
}

/** Reads the page after `cursor` (null: the first), of at most `limit` items. */
export type PageLoader<T, C> = (cursor: C | null, limit: number) => Promise<Page<T, C>>;

export interface Pages<T> {
  /** The items read so far; empty until the first page came. */
  readonly items: readonly T[];
  /** The first page has not come yet (or is being read again for another list). */
  readonly loading: boolean;
  /** Why the last read failed, as a sentence; null when it did not. */
  readonly error: string | null;
  /** Whether there are older items to read. */
  readonly hasMore: boolean;
  readonly loadingMore: boolean;
  /** Read the next page. */
  readonly more: () => void;
}

/** Items per page. */
export const PAGE_SIZE = 50;
/** The most a refresh reads again at once (the server's most per request). */
const MAX_REFRESH = 1000;

interface Loaded<T, C> {
  /** The loader these items came from: another one is another list. */
  readonly loader: PageLoader<T, C>;
  readonly items: readonly T[];
  readonly next: C | null;
  readonly error: string | null;
}

/** Why a request failed, for people. */
export function failureText(error: unknown): string {
  if (error instanceof RequestError) {
    switch (error.reason) {
      case "timeout":
        return `The server did not answer in time (${error.message}).`;
      case "disconnected":
        return "The connection was lost before the server answered.";
      case "unavailable":
        return `Not connected: ${error.message}.`;
      default:
        return `The server could not answer: ${error.message}.`;
    }
  }
  return `Something went wrong: ${String(error)}.`;
}

/**
 * The pages of the list `loader` reads (give a stable loader: a new one is a
 * new list, read from its first page). A new `refresh` value reads again the
 * items shown, keeping them on screen meanwhile.
 */
export function usePages<T, C>(loader: PageLoader<T, C>, refresh: unknown): Pages<T> {
  const [loaded, setLoaded] = useState<Loaded<T, C> | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  /** Answers to older reads are dropped: only the latest read may set the list. */
  const ticket = useRef(0);
  const shown = useRef(0);
  const current = loaded !== null && loaded.loader === loader ? loaded : null;

  useEffect(() => {
    shown.current = current?.items.length ?? 0;
  });

  useEffect(() => {
    let gone = false; // the list went: its answer is not wanted
    const mine = ++ticket.current;
    const limit = Math.min(Math.max(PAGE_SIZE, shown.current), MAX_REFRESH);
    loader(null, limit).then(
      (page) => {
        if (gone || ticket.current !== mine) return;
        setLoaded({ loader, items: page.items, next: page.next, error: null });
        setLoadingMore(false); // a read of older items meanwhile was dropped
      },
      (error: unknown) => {
        if (gone || ticket.current !== mine) return;
        setLoaded({ loader, items: [], next: null, error: failureText(error) });
        setLoadingMore(false);
      },
    );
    return () => {
      gone = true;
    };
  }, [loader, refresh]);

  const more = useCallback(() => {
    if (current?.next == null) return;
    const mine = ++ticket.current;
    setLoadingMore(true);
    loader(current.next, PAGE_SIZE).then(
      (page) => {
        if (ticket.current !== mine) return;
        setLoaded({ loader, items: [...current.items, ...page.items], next: page.next, error: null });
        setLoadingMore(false);
      },
      (error: unknown) => {
        if (ticket.current !== mine) return;
        setLoaded({ ...current, error: failureText(error) });
        setLoadingMore(false);
      },
    );
  }, [current, loader]);

  return {
    items: current?.items ?? [],
    loading: current === null,
    error: current?.error ?? null,
    hasMore: current?.next != null,
    loadingMore: loadingMore && current !== null,
    more,
  };
}
