/** The form that adds a key (or replaces an existing key's value). */

import { type FormEvent, useId, useMemo, useRef, useState } from "react";
import type { SyncClient } from "../sync";
import { type ValueMode, keyError, readValue } from "./format";
import { ValueEditor } from "./ValueEditor";

export function AddForm({ client, onSaved }: { client: SyncClient; onSaved: (key: string) => void }) {
  const id = useId();
  const [key, setKey] = useState("");
  const [text, setText] = useState("");
  const [mode, setMode] = useState<ValueMode>("json");
  const [tried, setTried] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const keyInput = useRef<HTMLInputElement>(null);

  const keyProblem = key === "" ? "Enter a key." : keyError(key);
  const value = useMemo(() => readValue(text, mode), [text, mode]);
  const valueProblem = "error" in value ? value.error : null;
  const exists = key !== "" && client.get(key) !== undefined;

  function submit(event?: FormEvent): void {
    event?.preventDefault();
    setTried(true);
    setFailure(null);
    if (keyProblem !== null) {
      keyInput.current?.focus();
      return;
    }
    if ("error" in value) return;
    try {
      client.set(key, value.value);
    } catch (error) {
      setFailure((error as Error).message);
      return;
    }
    onSaved(key);
    setKey("");
    setText("");
    setTried(false);
    keyInput.current?.focus();
  }

  const keyInvalid = tried && keyProblem !== null;
  return (
    <form className="add-form" onSubmit={submit} aria-labelledby={`${id}-title`} noValidate>
      <h2 id={`${id}-title`}>Add or replace a key</h2>
      <div className="add-grid">
        <div className="field">
          <label htmlFor={`${id}-key`}>Key</label>
          <input
            id={`${id}-key`}
            ref={keyInput}
            value={key}
            autoComplete="off"
            spellCheck={false}
            aria-invalid={keyInvalid}
            aria-describedby={keyInvalid ? `${id}-key-error` : exists ? `${id}-key-note` : undefined}
            onChange={(event) => setKey(event.target.value)}
          />
          {keyInvalid && (
            <p id={`${id}-key-error`} className="error-text">
              {keyProblem}
            </p>
          )}
          {!keyInvalid && exists && (
            <p id={`${id}-key-note`} className="hint">
              This key exists: saving replaces its value.
            </p>
          )}
        </div>
        <ValueEditor
          text={text}
          mode={mode}
          error={valueProblem}
          showError={tried || text !== ""}
          onText={setText}
          onMode={setMode}
          onSubmit={() => submit()}
        />
        <div className="add-actions">
          <button type="submit" className="primary">
            {exists ? "Replace" : "Add"}
          </button>
        </div>
      </div>
      {failure && (
        <p className="error-text" role="alert">
          {failure}
        </p>
      )}
    </form>
  );
}
