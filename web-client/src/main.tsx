/** Entry point: mount the editor. */
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./ui/App";
import "./ui/styles.css";

const root = document.getElementById("root");
if (root === null) throw new Error("index.html has no #root");
// The service worker keeps the app shell, so the editor (and the writes kept
// in this browser) loads even while the server that serves it is down.
if (import.meta.env.PROD && "serviceWorker" in navigator) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register("./sw.js").catch((error: unknown) => {
      console.warn("syncd: no offline app shell:", error);
    });
  });
}

createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
