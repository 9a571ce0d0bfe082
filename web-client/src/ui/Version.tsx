/** How a version of a key reads in the history and the conflicts: its value or "deleted", its writer ("you" for this tab), its time. */

import type { Version } from "../sync";
import { valueKind, valueText, whenText } from "./format";

/** The value of a version, "deleted", or "unknown" (a winner whose version left the history). */
export function VersionValue({ version }: { version: Version }) {
  switch (version.kind) {
    case "deleted":
      return <span className="deleted">deleted</span>;
    case "unknown":
      return <span className="unknown">value no longer in the history</span>;
    case "value": {
      const kind = valueKind(version.value);
      return kind === "string" ? (
        <span className="value-string">{valueText(version.value)}</span>
      ) : (
        <code className={`value-json kind-${kind}`}>{valueText(version.value)}</code>
      );
    }
  }
}

/** Who wrote a version: "you" when it is this tab's node. */
export function Writer({ node, me }: { node: string; me: string }) {
  return node === me ? (
    <span className="writer mine" title={`you (${node})`}>
      you
    </span>
  ) : (
    <span className="writer">{node}</span>
  );
}

/** When a timestamp was written, in local time (the full date and time in its tooltip). */
export function When({ ts }: { ts: string }) {
  const when = whenText(ts);
  return (
    <time dateTime={when.iso} title={when.full}>
      {when.label}
    </time>
  );
}
