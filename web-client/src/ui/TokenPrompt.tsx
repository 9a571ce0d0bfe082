/** Asks for the server's token when it refuses the connection as unauthorized. */

import { type FormEvent, useEffect, useId, useRef, useState } from "react";

export function TokenPrompt(props: { rejected: boolean; onToken: (token: string, remember: boolean) => void }) {
  const id = useId();
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(true);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => input.current?.focus(), []);

  function submit(event: FormEvent): void {
    event.preventDefault();
    if (token !== "") props.onToken(token, remember);
  }

  return (
    <section className="token-prompt" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>This server needs a token</h2>
      <p>
        Ask whoever runs <code>syncd serve</code> for its token: the read-write one lets you edit, the read-only one
        lets you watch.
      </p>
      {props.rejected && (
        <p className="error-text" role="alert">
          That token was not accepted.
        </p>
      )}
      <form onSubmit={submit}>
        <label htmlFor={`${id}-token`}>Token</label>
        <div className="token-row">
          <input
            id={`${id}-token`}
            ref={input}
            type="password"
            autoComplete="current-password"
            value={token}
            onChange={(event) => setToken(event.target.value)}
          />
          <button type="submit" className="primary" disabled={token === ""}>
            Connect
          </button>
        </div>
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(event) => setRemember(event.target.checked)} />
          Remember on this device
        </label>
      </form>
    </section>
  );
}
