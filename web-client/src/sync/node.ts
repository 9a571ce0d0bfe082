/**
 * This browser's node ids (contract §1: every replica has its own, kept
 * across restarts).
 *
 * A node id belongs to one tab at a time: two tabs sharing one would issue
 * clashing timestamps and share one set of pending writes. The ids are kept
 * in `localStorage`; a tab claims the first one whose Web Lock it can take
 * (the lock is released when the tab closes or reloads, so a reload gets its
 * id back, and a closed tab's unsent writes are picked up by the next tab),
 * or mints a new one. Where Web Locks are missing (an insecure origin), every
 * tab uses the first id.
 */

import { isNode } from "./timestamp";

const NODES_KEY = "syncd:v1:nodes";

/** A fresh node id: `web-` and 10 random lowercase hex digits. */
export function newNodeId(random: (bytes: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b)): string {
  const bytes = random(new Uint8Array(5));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function knownNodes(storage: Storage): string[] {
  try {
    const value: unknown = JSON.parse(storage.getItem(NODES_KEY) ?? "[]");
    return Array.isArray(value) ? value.filter((node): node is string => typeof node === "string" && isNode(node)) : [];
  } catch {
    return [];
  }
}

function remember(storage: Storage, node: string): void {
  const nodes = knownNodes(storage);
  if (!nodes.includes(node)) {
    try {
      storage.setItem(NODES_KEY, JSON.stringify([...nodes, node]));
    } catch {
      // storage refused: this tab still works, with a node id it will not get back
    }
  }
}

/** Take the lock `name` if it is free; resolves to its release function, or null. */
function tryLock(locks: LockManager, name: string): Promise<(() => void) | null> {
  return new Promise((resolve) => {
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (lock === null) {
          resolve(null);
          return undefined;
        }
        return new Promise<void>((release) => resolve(release));
      })
      .catch(() => resolve(null));
  });
}

/** Claim a node id for this tab, for as long as the tab lives. */
export async function claimNodeId(storage: Storage = window.localStorage): Promise<string> {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  const nodes = knownNodes(storage);
  if (locks === undefined) {
    const node = nodes[0] ?? newNodeId();
    remember(storage, node);
    return node;
  }
  for (let round = 0; round < 2 && nodes.length > 0; round++) {
    if (round > 0) await new Promise((done) => setTimeout(done, 250)); // a reloading tab may still hold its id
    for (const node of nodes) {
      if ((await tryLock(locks, `syncd-node-${node}`)) !== null) return node;
    }
  }
  const node = newNodeId();
  await tryLock(locks, `syncd-node-${node}`);
  remember(storage, node);
  return node;
}
