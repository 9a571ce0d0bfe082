/** How values, timestamps and statuses are shown, and how editor text becomes a value. */

import {
  type ClientView,
  type Entry,
  type JsonValue,
  ProtocolError,
  parseJson,
  parseTimestamp,
  validateKey,
  validateValue,
} from "../sync";

/** How the editor reads its text: as JSON, or as a plain string. */
export type ValueMode = "json" | "text";

/** A value as one line of text: strings as they are, anything else as compact JSON. */
export function valueText(value: JsonValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The text a filter searches in an entry's value. */
export function valueTextForSearch(entry: Entry): string {
  return entry.value === undefined ? "" : valueText(entry.value);
}

/** The kind of a value, as a word. */
export function valueKind(value: JsonValue): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value; // string, number, boolean, object
}

/** The editor's text and mode for an existing value. */
export function editorText(value: JsonValue): { text: string; mode: ValueMode } {
  return typeof value === "string" ? { text: value, mode: "text" } : { text: JSON.stringify(value, null, 2), mode: "json" };
}

/** The value an editor's text stands for, or a message saying why it is not one. */
export function readValue(text: string, mode: ValueMode): { value: JsonValue } | { error: string } {
  try {
    const value = mode === "text" ? text : parseJson(text);
    validateValue(value);
    return { value };
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    if (mode === "json" && error.message.startsWith("not JSON")) {
      const hint = text.trim() === "" ? "Enter a JSON value" : "This is not valid JSON";
      return { error: `${hint} — for example "text", 42, true, null, [1, 2] or {"a": 1}. Choose Text to store it as a plain string.` };
    }
    return { error: sentence(error.message) };
  }
}

/** Why a key cannot be used, or null. */
export function keyError(key: string): string | null {
  try {
    validateKey(key);
    return null;
  } catch (error) {
    if (error instanceof ProtocolError) return sentence(error.message);
    throw error;
  }
}

function sentence(message: string): string {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  return text.endsWith(".") ? text : `${text}.`;
}

/** When a timestamp was written: a time today, else a date and time. */
export function whenText(ts: string, now: Date = new Date()): { label: string; iso: string; full: string } {
  const date = new Date(parseTimestamp(ts).wall);
  const sameDay = date.toDateString() === now.toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const label = sameDay ? time : `${date.toLocaleDateString()} ${time}`;
  return { label, iso: date.toISOString(), full: date.toString() };
}

/** The status as words. */
export function statusText(view: ClientView, now: number): string {
  switch (view.status) {
    case "loading":
      return "Loading…";
    case "connecting":
      return "Connecting…";
    case "syncing":
      return "Syncing…";
    case "live":
      return "Live";
    case "offline": {
      if (view.retryAt === null) return "Offline";
      const seconds = Math.max(0, Math.ceil((view.retryAt - now) / 1000));
      return seconds > 0 ? `Offline — retrying in ${seconds} s` : "Offline — retrying…";
    }
    case "unauthorized":
      return "Token needed";
    case "failed":
      return "Refused by the server";
    case "stopped":
      return "Closed";
  }
}

/** The server the status is about: the node and URL while connected, else the URL being tried or next. */
export function serverText(view: ClientView): string {
  if (view.serverNode !== null) {
    const cluster = view.cluster === null ? "" : ` of cluster ${view.cluster}`;
    return `node ${view.serverNode}${cluster} (${view.url})`;
  }
  switch (view.status) {
    case "connecting":
      return `trying ${view.url}`;
    case "offline":
      return `next ${view.url}`;
    default:
      return view.url;
  }
}
