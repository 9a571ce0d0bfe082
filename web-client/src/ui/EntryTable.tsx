/**
 * The document as a table: key, value, who changed it and when, and actions.
 * Rows changed by others flash briefly; on a narrow screen each row is a card.
 * Every row, read-only ones too, opens its key's history: its History button,
 * or the `h` key while the focus is in the row.
 */

import { type KeyboardEvent, useEffect, useMemo, useRef, useState } from "react";
import { type Entry, type JsonValue, type SyncClient, nodeOf } from "../sync";
import { type ValueMode, editorText, readValue, valueKind, valueText, whenText } from "./format";
import { ValueEditor } from "./ValueEditor";

export interface EntryTableProps {
  client: SyncClient;
  entries: readonly Entry[];
  total: number;
  readonly: boolean;
  highlights: ReadonlyMap<string, string>;
  /** Nothing has been received from the server yet. */
  waiting: boolean;
  onAnnounce: (message: string) => void;
  onOpenHistory: (key: string) => void;
}

const PAGE = 200;

export function EntryTable(props: EntryTableProps) {
  const [limit, setLimit] = useState(PAGE);
  const heading = useRef<HTMLHeadingElement>(null);
  const shown = props.entries.slice(0, limit);
  const focusHeading = (): void => heading.current?.focus();

  return (
    <section className="entries" aria-labelledby="entries-title">
      <h2 id="entries-title" ref={heading} tabIndex={-1}>
        Entries{" "}
        <span className="count">
          {props.entries.length === props.total ? props.total : `${props.entries.length} of ${props.total}`}
        </span>
      </h2>
      {props.entries.length === 0 ? (
        <p className="empty">
          {props.total > 0
            ? "No key or value matches the filter."
            : props.waiting
              ? "Waiting for the server…"
              : "This document is empty."}
        </p>
      ) : (
        <table>
          <caption className="sr-only">Keys and values of the document, with who changed each and when</caption>
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Value</th>
              <th scope="col">Changed</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((entry) => (
              <Row
                key={entry.key}
                entry={entry}
                client={props.client}
                readonly={props.readonly}
                pending={props.client.isPending(entry.key)}
                flashBy={props.highlights.get(entry.key)}
                onAnnounce={props.onAnnounce}
                onDeleted={focusHeading}
                onOpenHistory={props.onOpenHistory}
              />
            ))}
          </tbody>
        </table>
      )}
      {props.entries.length > limit && (
        <button type="button" className="more" onClick={() => setLimit(limit + PAGE)}>
          Show {Math.min(PAGE, props.entries.length - limit)} more
        </button>
      )}
    </section>
  );
}

interface RowProps {
  entry: Entry;
  client: SyncClient;
  readonly: boolean;
  pending: boolean;
  flashBy: string | undefined;
  onAnnounce: (message: string) => void;
  onDeleted: () => void;
  onOpenHistory: (key: string) => void;
}

/** Whether a key press is the row's history shortcut: a bare `h`, not typed into a field. */
function isHistoryShortcut(event: KeyboardEvent<HTMLTableRowElement>): boolean {
  const target = event.target as HTMLElement;
  const typing = target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
  return event.key === "h" && !typing && !event.altKey && !event.ctrlKey && !event.metaKey;
}

function Row({ entry, client, readonly, pending, flashBy, onAnnounce, onDeleted, onOpenHistory }: RowProps) {
  const [editing, setEditing] = useState<{ text: string; mode: ValueMode; startedAt: string } | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [tried, setTried] = useState(false);
  const editButton = useRef<HTMLButtonElement>(null);
  const confirmButton = useRef<HTMLButtonElement>(null);
  const returnFocus = useRef(false);
  const value = entry.value as JsonValue;
  const writer = nodeOf(entry.ts);
  const mine = writer === client.node;
  const when = whenText(entry.ts);
  const parsed = useMemo(() => (editing ? readValue(editing.text, editing.mode) : null), [editing]);
  const changedMeanwhile = editing !== null && editing.startedAt !== entry.ts;

  useEffect(() => {
    if (!editing && !confirming && returnFocus.current) {
      returnFocus.current = false;
      editButton.current?.focus();
    }
  }, [editing, confirming]);
  useEffect(() => {
    if (confirming) confirmButton.current?.focus();
  }, [confirming]);

  function startEdit(): void {
    setEditing({ ...editorText(value), startedAt: entry.ts });
    setTried(false);
    setConfirming(false);
  }

  function cancel(): void {
    returnFocus.current = true;
    setEditing(null);
    setConfirming(false);
  }

  function save(): void {
    setTried(true);
    if (parsed === null || "error" in parsed) return;
    try {
      client.set(entry.key, parsed.value);
    } catch (error) {
      onAnnounce((error as Error).message);
      return;
    }
    returnFocus.current = true;
    setEditing(null);
    onAnnounce(`Saved ${entry.key}.`);
  }

  function remove(): void {
    try {
      client.remove(entry.key);
    } catch (error) {
      onAnnounce((error as Error).message);
      return;
    }
    onAnnounce(`Deleted ${entry.key}.`);
    onDeleted();
  }

  const kind = valueKind(value);
  return (
    <>
      <tr
        className={flashBy !== undefined ? "flash" : undefined}
        data-key={entry.key}
        onKeyDown={(event) => {
          if (!isHistoryShortcut(event)) return;
          event.preventDefault();
          onOpenHistory(entry.key);
        }}
      >
        <th scope="row" className="key" data-label="Key" tabIndex={0} title="Press h for its history" aria-keyshortcuts="h">
          <span className="key-text">{entry.key}</span>
        </th>
        <td className="value" data-label="Value">
          {kind === "string" ? (
            <span className="value-string">{valueText(value)}</span>
          ) : (
            <code className={`value-json kind-${kind}`}>{valueText(value)}</code>
          )}
          {pending && (
            <span className="badge pending" title="Not yet acknowledged by the server">
              unsent
            </span>
          )}
        </td>
        <td className="who" data-label="Changed">
          <span className={mine ? "writer mine" : "writer"}>{mine ? "you" : writer}</span>{" "}
          <time dateTime={when.iso} title={when.full}>
            {when.label}
          </time>
          {flashBy !== undefined && <span className="sr-only"> (just changed by {flashBy})</span>}
        </td>
        <td className="actions">
          <button type="button" onClick={() => onOpenHistory(entry.key)} aria-label={`History of ${entry.key}`} aria-keyshortcuts="h">
            History
          </button>
          {!readonly &&
            (confirming ? (
              <span className="confirm" role="group" aria-label={`Delete ${entry.key}?`}>
                <button type="button" ref={confirmButton} className="danger" onClick={remove}>
                  Delete
                </button>
                <button type="button" onClick={cancel}>
                  Keep
                </button>
              </span>
            ) : (
              <>
                <button
                  type="button"
                  ref={editButton}
                  onClick={editing ? cancel : startEdit}
                  aria-expanded={editing !== null}
                  aria-label={`Edit ${entry.key}`}
                >
                  Edit
                </button>
                <button type="button" onClick={() => setConfirming(true)} aria-label={`Delete ${entry.key}`}>
                  Delete
                </button>
              </>
            ))}
        </td>
      </tr>
      {editing && !readonly && (
        <tr className="edit-row">
          <td colSpan={4}>
            <form
              className="edit-form"
              aria-label={`Edit ${entry.key}`}
              onSubmit={(event) => {
                event.preventDefault();
                save();
              }}
            >
              <ValueEditor
                label={`New value of ${entry.key}`}
                text={editing.text}
                mode={editing.mode}
                error={parsed !== null && "error" in parsed ? parsed.error : null}
                showError={tried || editing.text !== ""}
                onText={(text) => setEditing({ ...editing, text })}
                onMode={(mode) => setEditing({ ...editing, mode })}
                onSubmit={save}
                onCancel={cancel}
                autoFocus
              />
              {changedMeanwhile && (
                <p className="warning" role="alert">
                  {mine ? "You" : writer} changed this key while you were editing; saving replaces that change.
                </p>
              )}
              <div className="edit-actions">
                <button type="submit" className="primary">
                  Save
                </button>
                <button type="button" onClick={cancel}>
                  Cancel
                </button>
              </div>
            </form>
          </td>
        </tr>
      )}
    </>
  );
}
