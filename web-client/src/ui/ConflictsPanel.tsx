/**
 * The document's overridden writes (the server's conflict record) in a
 * drawer: each write that lost its merge, newest first, with the entry that
 * beat it; this tab's own marked "you"; each key a link to its history. Opened
 * from the notice of a lost change, it points out that change's record — or
 * says why there is none.
 */

import { useCallback, useId, useState } from "react";
import type { Conflict, SyncClient, Write } from "../sync";
import { Drawer } from "./Drawer";
import { type PageLoader, usePages } from "./paging";
import { VersionValue, When, Writer } from "./Version";

export function ConflictsPanel(props: {
  client: SyncClient;
  /** A lost change of this tab to point out, if the panel was opened for it. */
  target: Write | null;
  onOpenHistory: (key: string) => void;
  onClose: () => void;
}) {
  const { client, target } = props;
  const id = useId();
  const [onlyMine, setOnlyMine] = useState(false);
  const [refreshes, setRefreshes] = useState(0);
  const loader = useCallback<PageLoader<Conflict, number>>(
    (before, limit) =>
      client.conflicts({ node: onlyMine ? client.node : null, limit, before }).then((page) => ({ items: page.conflicts, next: page.next })),
    [client, onlyMine],
  );
  const pages = usePages(loader, refreshes);
  const found = target !== null && pages.items.some((conflict) => conflict.lost.ts === target.ts);
  const scrollTo = useCallback((element: HTMLLIElement | null) => element?.scrollIntoView({ block: "nearest" }), []);

  return (
    <Drawer title="Overridden writes" onClose={props.onClose} testId="conflicts">
      <p className="hint">
        Writes that lost to a newer write of the same key (the newest timestamp wins), as the server recorded them, newest first.
      </p>
      <div className="drawer-tools">
        <label className="check" htmlFor={`${id}-mine`}>
          <input id={`${id}-mine`} type="checkbox" checked={onlyMine} onChange={(event) => setOnlyMine(event.target.checked)} />
          Only mine
        </label>
        <button type="button" onClick={() => setRefreshes((n) => n + 1)}>
          Refresh
        </button>
      </div>
      {target !== null && !pages.loading && !found && pages.error === null && (
        <p className="notice warning" data-testid="target-missing">
          Your change to <span className="key-text">{target.key}</span> is not in the server&apos;s record
          {pages.hasMore ? " among the newest shown" : ""}: this tab most likely saw the newer value before sending it, so the
          server never got it. <button type="button" className="link" onClick={() => props.onOpenHistory(target.key)}>
            History of {target.key}
          </button>
        </p>
      )}
      {pages.loading ? (
        <p className="empty" aria-busy="true">
          Loading…
        </p>
      ) : pages.items.length === 0 && pages.error === null ? (
        <p className="empty" data-testid="conflicts-empty">
          {onlyMine ? "None of your writes was overridden." : "No overridden writes are recorded for this document."} (A server run with
          --history-retention 0 records none.)
        </p>
      ) : (
        <ol className="conflicts" aria-label="Overridden writes, newest first">
          {pages.items.map((conflict) => {
            const mine = conflict.lost.node === client.node;
            const pointed = target !== null && conflict.lost.ts === target.ts;
            const classes = ["conflict", mine ? "mine" : "", pointed ? "target" : ""].filter(Boolean).join(" ");
            return (
              <li key={conflict.id} className={classes} ref={pointed ? scrollTo : undefined} aria-current={pointed ? "true" : undefined}>
                <div className="conflict-head">
                  <button type="button" className="link key-text" onClick={() => props.onOpenHistory(conflict.key)} aria-label={`History of ${conflict.key}`}>
                    {conflict.key}
                  </button>
                  {mine && <span className="badge mine">yours</span>}
                </div>
                <dl>
                  <dt>Overridden</dt>
                  <dd>
                    <VersionValue version={conflict.lost} /> <span className="by">by</span> <Writer node={conflict.lost.node} me={client.node} />{" "}
                    <When ts={conflict.lost.ts} />
                  </dd>
                  <dt>Won</dt>
                  <dd>
                    <VersionValue version={conflict.winner} /> <span className="by">by</span> <Writer node={conflict.winner.node} me={client.node} />{" "}
                    <When ts={conflict.winner.ts} />
                  </dd>
                </dl>
              </li>
            );
          })}
        </ol>
      )}
      {pages.error !== null && (
        <p className="notice error" role="alert">
          The overridden writes could not be read. {pages.error}{" "}
          <button type="button" onClick={() => setRefreshes((n) => n + 1)}>
            Try again
          </button>
        </p>
      )}
      {pages.hasMore && (
        <button type="button" className="more" onClick={pages.more} disabled={pages.loadingMore}>
          {pages.loadingMore ? "Loading…" : "Older"}
        </button>
      )}
    </Drawer>
  );
}
