// The sans-I/O replica against the session vectors (tests/vectors/sessions.json),
// which pytest's tests/test_sessions.py reads too: after every step of a scripted
// session, the frames sent, the events (in the vectors' neutral form) and the named
// parts of the state are exactly as written, so both client state machines agree.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { JsonValue } from "../src/sync/canonical";
import { Replica, type ReplicaEvent } from "../src/sync/replica";

type Json = Record<string, unknown>;
interface Step extends Json {
  do: string;
  sent?: Json[];
  events?: Json[];
  state?: Json;
  raises?: boolean;
}
interface Vectors {
  node: string;
  doc: string;
  clock: number;
  window: number;
  sessions: { name: string; steps: Step[] }[];
}

const VECTORS = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../tests/vectors/sessions.json", import.meta.url)), "utf8"),
) as Vectors;
const PHASES = { closed: "offline", hello: "hello", handshake: "syncing", live: "synced" } as const;

/** An event in the vectors' form; events the vectors do not pin give nothing. */
function neutral(event: ReplicaEvent): Json[] {
  switch (event.type) {
    case "changes":
      return event.changes.map((change) => {
        const entry = change.entry;
        const shown: Json = { type: "change", key: change.key };
        if (entry === undefined || entry.deleted) shown.deleted = true;
        else shown.value = entry.value;
        shown.local = change.source === "local";
        return shown;
      });
    case "synced":
      return [{ type: "synced", full: event.full, seq: event.seq }];
    case "acked":
      return [{ type: "acked", writes: event.writes.map((w) => [w.key, w.ts]) }];
    case "overridden":
      return [{ type: "overridden", key: event.write.key, ts: event.write.ts, winner_ts: event.winner.ts }];
    case "rejected":
      return [
        { type: "rejected", code: event.code, writes: event.writes.map((w) => [w.key, w.ts]), retry_after_ms: event.retryAfterMs },
      ];
    case "error":
      return [{ type: "error", code: event.code, fatal: event.fatal }];
    default:
      return []; // "state" and "pending": the state's fields pin them
  }
}

/** Consecutive change events sorted by key (README: their order is not pinned). */
function sortChangeRuns(events: Json[]): Json[] {
  const result: Json[] = [];
  let run: Json[] = [];
  for (const event of [...events, { type: "end" }]) {
    if (event.type === "change") {
      run.push(event);
      continue;
    }
    result.push(...run.sort((a, b) => ((a.key as string) < (b.key as string) ? -1 : (a.key as string) > (b.key as string) ? 1 : 0)));
    run = [];
    if (event.type !== "end") result.push(event);
  }
  return result;
}

function stateOf(replica: Replica): Json {
  const entries: Json = {};
  for (const entry of replica.allEntries()) {
    entries[entry.key] = entry.deleted ? { ts: entry.ts, deleted: true } : { ts: entry.ts, value: entry.value };
  }
  return {
    phase: PHASES[replica.phase],
    entries,
    pending: replica.pendingEntries().map((entry) => [entry.key, entry.ts]),
    since: replica.since,
    peers: [...replica.peers].sort(),
    readonly: replica.readonly === true,
  };
}

function act(replica: Replica, clock: { now: number }, step: Step): void {
  switch (step.do) {
    case "connect":
      return replica.connect();
    case "disconnect":
      return replica.disconnect();
    case "set":
      replica.set(step.key as string, step.value as JsonValue);
      return;
    case "delete":
      replica.remove(step.key as string);
      return;
    case "ping":
      return replica.ping();
    case "advance":
      clock.now += step.ms as number;
      return;
    case "receive":
      return replica.receive(JSON.stringify(step.frame));
    default:
      throw new Error(`unknown action ${step.do}`);
  }
}

describe("session vectors", () => {
  for (const session of VECTORS.sessions) {
    it(session.name, () => {
      const clock = { now: VECTORS.clock };
      const replica = new Replica({ doc: VECTORS.doc, node: VECTORS.node, clock: () => clock.now });
      let events: ReplicaEvent[] = [];
      replica.on((event) => events.push(event));
      session.steps.forEach((step, index) => {
        const where = `step ${index + 1} (${step.do})`;
        events = [];
        if (step.raises) expect(() => act(replica, clock, step), where).toThrow();
        else act(replica, clock, step);
        const sent = replica.takeOutgoing(VECTORS.window).map((text) => JSON.parse(text) as Json);
        expect(sent, `${where}: frames sent`).toEqual(step.sent ?? []);
        expect(sortChangeRuns(events.flatMap(neutral)), `${where}: events`).toEqual(step.events ?? []);
        const state = stateOf(replica);
        for (const [name, expected] of Object.entries(step.state ?? {})) {
          expect(state[name], `${where}: state ${name}`).toEqual(expected);
        }
      });
    });
  }
});
