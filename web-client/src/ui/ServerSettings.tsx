/** The settings of the servers to connect to: a button that opens a form for a list of WebSocket URLs. */

import { type FormEvent, useEffect, useId, useRef, useState } from "react";
import { type ServerSetting, parseServerList } from "./servers";

export function ServerSettings(props: {
  setting: ServerSetting;
  /** The list saved now, if any (the form starts from it). */
  saved: readonly string[] | null;
  /** The page's own server, used when no list is saved. */
  fallback: string;
  /** Save a list (empty: back to the page's own server); returns why it could not be saved, or null once it is. */
  onSave: (urls: readonly string[]) => string | null;
}) {
  const id = useId();
  const [open, setOpen] = useState(false);
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const box = useRef<HTMLTextAreaElement>(null);
  const opener = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    if (open) box.current?.focus();
  }, [open]);

  function show(): void {
    setText((props.saved ?? []).join("\n"));
    setError(null);
    setOpen(true);
  }

  function close(): void {
    setOpen(false);
    opener.current?.focus();
  }

  function submit(event: FormEvent): void {
    event.preventDefault();
    const parsed = parseServerList(text);
    if ("error" in parsed) {
      setError(parsed.error);
      return;
    }
    const failure = props.onSave(parsed.urls);
    if (failure !== null) {
      setError(failure);
      return;
    }
    close();
  }

  return (
    <div className="server-settings">
      <span>
        {props.setting.urls.length === 1 ? "Server" : "Servers"}{" "}
        {props.setting.urls.map((url, i) => (
          <span key={url}>
            {i > 0 && ", "}
            <code>{url}</code>
          </span>
        ))}
      </span>
      <button type="button" ref={opener} aria-expanded={open} aria-controls={`${id}-panel`} onClick={open ? close : show}>
        Servers…
      </button>
      {props.setting.problem !== null && (
        <p className="error-text" role="alert">
          {props.setting.problem}
        </p>
      )}
      {open && (
        <section id={`${id}-panel`} className="settings-panel" aria-labelledby={`${id}-title`}>
          <h2 id={`${id}-title`}>Servers</h2>
          <p>
            The WebSocket URLs of the <code>syncd serve</code> nodes of one cluster, one per line or separated by commas. The
            page uses the first that answers and moves to the next when it loses one. Leave it empty to use this page's own
            server, <code>{props.fallback}</code>.
          </p>
          {props.setting.source === "query" && (
            <p className="hint">This page's address names its servers (?server=), which comes before the list saved here.</p>
          )}
          <form
            onSubmit={submit}
            onKeyDown={(event) => {
              if (event.key === "Escape") close();
            }}
          >
            <label htmlFor={`${id}-urls`}>Server URLs</label>
            <textarea
              id={`${id}-urls`}
              ref={box}
              rows={4}
              spellCheck={false}
              value={text}
              placeholder={"ws://127.0.0.1:8765/ws\nws://127.0.0.1:8766/ws"}
              aria-invalid={error !== null}
              aria-describedby={error !== null ? `${id}-error` : undefined}
              onChange={(event) => {
                setText(event.target.value);
                setError(null);
              }}
            />
            {error !== null && (
              <p id={`${id}-error`} className="error-text" role="alert">
                {error}
              </p>
            )}
            <div className="settings-actions">
              <button type="submit" className="primary">
                Save
              </button>
              <button type="button" onClick={close}>
                Cancel
              </button>
            </div>
          </form>
        </section>
      )}
    </div>
  );
}
