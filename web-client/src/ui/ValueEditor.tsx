/** A value's text with its mode (JSON or plain text) and live validation. */

import { type KeyboardEvent, useId } from "react";
import type { ValueMode } from "./format";

export interface ValueEditorProps {
  text: string;
  mode: ValueMode;
  error: string | null;
  /** Show the error (after the first attempt to save, or once the text is not empty). */
  showError: boolean;
  onText: (text: string) => void;
  onMode: (mode: ValueMode) => void;
  /** Ctrl+Enter (or Cmd+Enter) in the text area. */
  onSubmit: () => void;
  /** Escape in the text area. */
  onCancel?: () => void;
  label?: string;
  autoFocus?: boolean;
}

export function ValueEditor(props: ValueEditorProps) {
  const id = useId();
  const textId = `${id}-text`;
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const invalid = props.showError && props.error !== null;

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>): void {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      props.onSubmit();
    } else if (event.key === "Escape" && props.onCancel) {
      event.preventDefault();
      props.onCancel();
    }
  }

  return (
    <div className="value-editor">
      <div className="value-editor-head">
        <label htmlFor={textId}>{props.label ?? "Value"}</label>
        <fieldset className="mode">
          <legend className="sr-only">Read the value as</legend>
          {(["json", "text"] as const).map((mode) => (
            <label key={mode} className="mode-option">
              <input
                type="radio"
                name={`${id}-mode`}
                value={mode}
                checked={props.mode === mode}
                onChange={() => props.onMode(mode)}
              />
              {mode === "json" ? "JSON" : "Text"}
            </label>
          ))}
        </fieldset>
      </div>
      <textarea
        id={textId}
        className="value-text"
        value={props.text}
        rows={Math.min(8, Math.max(2, props.text.split("\n").length))}
        spellCheck={props.mode === "text"}
        autoFocus={props.autoFocus}
        aria-invalid={invalid}
        aria-describedby={`${hintId}${invalid ? ` ${errorId}` : ""}`}
        onChange={(event) => props.onText(event.target.value)}
        onKeyDown={onKeyDown}
      />
      <p id={hintId} className="hint">
        {props.mode === "json" ? "A JSON value: \"text\", 42, true, null, [ … ] or { … }." : "Stored as a plain string."}{" "}
        Ctrl+Enter saves{props.onCancel ? ", Escape cancels" : ""}.
      </p>
      {invalid && (
        <p id={errorId} className="error-text">
          {props.error}
        </p>
      )}
    </div>
  );
}
