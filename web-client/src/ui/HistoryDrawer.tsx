/**
 * One key's history in a drawer: its versions newest first (local time,
 * writer, value or "deleted"), older ones page by page, and a Restore button
 * per version that writes that value again as a new write (a delete restores
 * as a delete). It reads the history again whenever the key changes or a
 * write of it is acknowledged, so a restore shows up as the newest version.
 */

import { useCallback, useId, useState } from "react";
import type { SyncClient, Version } from "../sync";
import { Drawer } from "./Drawer";
import { whenText } from "./format";
import { useClientView } from "./hooks";
import { type PageLoader, usePages } from "./paging";
import { VersionValue, When, Writer } from "./Version";

export function HistoryDrawer(props: {
  client: SyncClient;
  /** The key whose history is shown. */
  entryKey: string;
  onAnnounce: (message: string) => void;
  onClose: () => void;
}) {
  const { client, entryKey, onAnnounce } = props;
  const id = useId();
  const view = useClientView(client);
  const [retries, setRetries] = useState(0);
  const [restored, setRestored] = useState<string | null>(null);
  const entry = client.get(entryKey);
  const pending = client.isPending(entryKey);
  const loader = useCallback<PageLoader<Version, string>>(
    (before, limit) => client.history(entryKey, { limit, before }).then((page) => ({ items: page.versions, next: page.next })),
    [client, entryKey],
  );
  // Read again when the key changes, when its write is acknowledged (then the server has the version), and on "Try again".
  const pages = usePages(loader, `${entry?.ts ?? "none"} ${pending} ${retries}`);

  function restore(version: Version): void {
    const when = whenText(version.ts).label;
    try {
      if (version.kind === "deleted") client.remove(entryKey);
      else if (version.kind === "value") client.set(entryKey, version.value);
      else return;
    } catch (error) {
      const failed = `Not restored: ${(error as Error).message}`;
      setRestored(failed);
      onAnnounce(failed);
      return;
    }
    const done = version.kind === "deleted" ? `Deleted ${entryKey} again, as at ${when}.` : `Restored ${entryKey} to its value of ${when}.`;
    setRestored(done);
    onAnnounce(done);
  }

  /** The version the key holds now: the live entry's, or the newest when that is a delete. */
  const isCurrent = (version: Version, index: number): boolean =>
    entry === undefined ? index === 0 && version.kind === "deleted" : version.ts === entry.ts;

  return (
    <Drawer title={<>History of <span className="key-text">{entryKey}</span></>} onClose={props.onClose} testId="history">
      {view.readonly && (
        <p className="hint" id={`${id}-readonly`}>
          Restore is off: this token is read-only, it can read the history but not write.
        </p>
      )}
      {/* Announced by the page's live region (onAnnounce); shown here too. */}
      {restored !== null && <p className="hint restored">{restored}</p>}
      {pages.loading ? (
        <p className="empty" aria-busy="true">
          Loading the history…
        </p>
      ) : pages.items.length === 0 && pages.error === null ? (
        <p className="empty" data-testid="history-empty">
          {pending
            ? "No history yet: your change to this key has not reached the server."
            : entry !== undefined
              ? "This server keeps no history (it runs with --history-retention 0), so there are no earlier versions to show or restore."
              : "The server has no history of this key."}
        </p>
      ) : (
        <ol className="versions" aria-label={`Versions of ${entryKey}, newest first`}>
          {pages.items.map((version, index) => {
            const current = isCurrent(version, index);
            const label = whenText(version.ts).label;
            return (
              <li key={version.ts} className={current ? "version current" : "version"}>
                <div className="version-head">
                  <When ts={version.ts} /> <Writer node={version.node} me={client.node} />
                  {current && (
                    <>
                      {" "}
                      <span className="badge">current</span>
                    </>
                  )}
                </div>
                <div className="version-value">
                  <VersionValue version={version} />
                </div>
                <button
                  type="button"
                  disabled={view.readonly || current}
                  aria-describedby={view.readonly ? `${id}-readonly` : undefined}
                  aria-label={`Restore ${entryKey} to its ${version.kind === "deleted" ? "delete" : "value"} of ${label}`}
                  title={view.readonly ? "Read-only token: restoring is a write" : current ? "The key holds this version now" : undefined}
                  onClick={() => restore(version)}
                >
                  Restore
                </button>
              </li>
            );
          })}
        </ol>
      )}
      {pages.error !== null && (
        <p className="notice error" role="alert">
          The history could not be read. {pages.error}{" "}
          <button type="button" onClick={() => setRetries((n) => n + 1)}>
            Try again
          </button>
        </p>
      )}
      {pages.hasMore && (
        <button type="button" className="more" onClick={pages.more} disabled={pages.loadingMore}>
          {pages.loadingMore ? "Loading…" : "Older versions"}
        </button>
      )}
    </Drawer>
  );
}
