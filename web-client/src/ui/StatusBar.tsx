/** Connection status and the server node it is on, unsent changes, who else is here, and who you are. */

import type { ClientView } from "../sync";
import { serverText, statusText } from "./format";
import { useNow } from "./hooks";

export function StatusBar({ view }: { view: ClientView }) {
  const now = useNow(view.status === "offline");
  const others = view.peers.length;
  return (
    <div className="status-bar">
      <span className={`pill status-${view.status}`} role="status" data-testid="status">
        <span className="dot" aria-hidden="true" />
        {statusText(view, now)}
      </span>
      <span className="server" data-testid="server">
        {serverText(view)}
      </span>
      <span className={view.pending > 0 ? "pill pending" : "pill"} data-testid="pending">
        {view.pending === 0 ? "All changes sent" : `${view.pending} unsent ${view.pending === 1 ? "change" : "changes"}`}
      </span>
      {view.readonly && (
        <span className="pill readonly" data-testid="readonly">
          Read-only
        </span>
      )}
      <span className="peers" data-testid="peers">
        <span>{others === 0 ? "No one else online" : `${others} other${others === 1 ? "" : "s"} online`}</span>
        {others > 0 && (
          <ul aria-label="Others online">
            {view.peers.map((peer) => (
              <li key={peer} className="chip">
                {peer}
              </li>
            ))}
          </ul>
        )}
      </span>
      <span className="me">
        You are <code data-testid="node">{view.node}</code>
      </span>
    </div>
  );
}
