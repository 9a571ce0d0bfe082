/**
 * A panel that slides over the right side of the page (a key's history, the
 * overridden writes): a dialog named by its heading, which takes the focus
 * when it opens and gives it back to what opened it when it closes; Escape or
 * the Close button closes it. Escape works with the focus in the drawer or
 * nowhere (a button that went away, e.g. "Older" on the last page), not while
 * the focus is elsewhere on the page, whose own Escape (an editor's Cancel) it
 * leaves alone.
 */

import { type ReactNode, useEffect, useId, useRef } from "react";

export function Drawer(props: { title: ReactNode; onClose: () => void; children: ReactNode; testId?: string }) {
  const id = useId();
  const heading = useRef<HTMLHeadingElement>(null);
  const drawer = useRef<HTMLElement>(null);
  const { onClose } = props;

  useEffect(() => {
    const onKeyDown = (event: KeyboardEvent): void => {
      const focus = document.activeElement;
      const here = focus === null || focus === document.body || (focus instanceof Node && drawer.current?.contains(focus) === true);
      if (event.key === "Escape" && here) onClose();
    };
    document.addEventListener("keydown", onKeyDown);
    return () => document.removeEventListener("keydown", onKeyDown);
  }, [onClose]);

  useEffect(() => {
    // What had the focus when the drawer opened gets it back when it closes.
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    heading.current?.focus();
    return () => {
      if (opener?.isConnected) opener.focus();
    };
  }, []);

  return (
    <aside
      className="drawer"
      role="dialog"
      aria-labelledby={`${id}-title`}
      data-testid={props.testId}
      ref={drawer}
    >
      <header className="drawer-head">
        <h2 id={`${id}-title`} ref={heading} tabIndex={-1}>
          {props.title}
        </h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </header>
      <div className="drawer-body">{props.children}</div>
    </aside>
  );
}
