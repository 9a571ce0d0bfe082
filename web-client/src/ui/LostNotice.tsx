/**
 * The notice of this tab's changes that lost: a pending write that met a
 * newer write of its key (the newest timestamp wins) and was dropped. It links
 * to the overridden writes, pointing out the change, and to the key's history.
 */

import { type LostWrite, type Write, nodeOf } from "../sync";
import { When } from "./Version";

export function LostNotice(props: {
  lost: readonly LostWrite[];
  onOpenConflicts: (write: Write) => void;
  onOpenHistory: (key: string) => void;
  onDismiss: () => void;
}) {
  const last = props.lost[props.lost.length - 1]!;
  const others = props.lost.length - 1;
  const { key } = last.write;
  const winner = last.winner;
  return (
    <p className="notice warning" role="alert" data-testid="lost-notice">
      Your change to <span className="key-text">{key}</span> was overridden:{" "}
      {winner.deleted ? "it was deleted" : "it was changed"} by {nodeOf(winner.ts)} at <When ts={winner.ts} />, a newer
      write (the newest timestamp wins)
      {others > 0 && ` — and ${others} more of your ${others === 1 ? "change" : "changes"} before it`}.{" "}
      <button type="button" onClick={() => props.onOpenConflicts(last.write)}>
        See the conflict
      </button>{" "}
      <button type="button" onClick={() => props.onOpenHistory(key)} aria-label={`History of ${key}`}>
        History
      </button>{" "}
      <button type="button" onClick={props.onDismiss}>
        Dismiss
      </button>
    </p>
  );
}
