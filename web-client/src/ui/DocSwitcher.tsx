/** Opens another document: the URL names it (`#/doc/NAME`), so it can be bookmarked and shared. */

import { type FormEvent, useId, useState } from "react";
import { isDocName } from "../sync";
import { docHash } from "./hooks";

export function DocSwitcher({ doc }: { doc: string }) {
  const id = useId();
  const [name, setName] = useState(doc);
  const [tried, setTried] = useState(false);
  const [shownDoc, setShownDoc] = useState(doc);
  if (doc !== shownDoc) {
    // Another document opened: show its name (state adjusted during render, not in an effect).
    setShownDoc(doc);
    setName(doc);
  }
  const valid = isDocName(name);

  function submit(event: FormEvent): void {
    event.preventDefault();
    setTried(true);
    if (valid) {
      window.location.hash = docHash(name);
      setTried(false);
    }
  }

  return (
    <form className="doc-switcher" onSubmit={submit} role="search" aria-label="Open a document">
      <label htmlFor={`${id}-doc`}>Document</label>
      <input
        id={`${id}-doc`}
        value={name}
        spellCheck={false}
        autoComplete="off"
        aria-invalid={tried && !valid}
        aria-describedby={tried && !valid ? `${id}-error` : undefined}
        onChange={(event) => setName(event.target.value)}
      />
      <button type="submit">Open</button>
      {tried && !valid && (
        <p id={`${id}-error`} className="error-text">
          1–128 of A–Z a–z 0–9 . _ -, not starting with “.”.
        </p>
      )}
    </form>
  );
}
