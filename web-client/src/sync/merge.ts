/**
 * The merge rule (contract §1) and the LWW map it makes.
 *
 * For one key the entry with the greater `ts` wins. At an equal `ts` a live
 * entry beats a tombstone, and between two live entries the one whose value's
 * canonical JSON text is greater **as UTF-8 bytes** wins (not as JavaScript
 * strings, which compare UTF-16 code units). Identical entries change nothing,
 * so merging is commutative, associative and idempotent.
 */

import { compareUtf8 } from "./canonical";
import type { Entry } from "./entry";

/** Whether `incoming` beats `current` (an absent entry loses to anything). */
export function wins(incoming: Entry, current: Entry | undefined): boolean {
  if (current === undefined) return true;
  if (incoming.ts !== current.ts) return incoming.ts > current.ts; // fixed-width ASCII: string order is ts order
  const a = incoming.canonical;
  const b = current.canonical;
  if (a === null) return false; // a tombstone never beats an entry of the same ts
  if (b === null) return true; // a live entry beats a tombstone
  return compareUtf8(a, b) > 0;
}

/** A Last-Write-Wins element dictionary: one winning entry per key, tombstones included. */
export class LwwMap {
  private readonly slots = new Map<string, Entry>();

  /** Merge one entry; true when it won (was applied). */
  merge(entry: Entry): boolean {
    if (!wins(entry, this.slots.get(entry.key))) return false;
    this.slots.set(entry.key, entry);
    return true;
  }

  get(key: string): Entry | undefined {
    return this.slots.get(key);
  }

  /** The live value's entry of `key`, or undefined when absent or deleted. */
  live(key: string): Entry | undefined {
    const entry = this.slots.get(key);
    return entry === undefined || entry.deleted ? undefined : entry;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** Forget a key entirely, tombstone and all (only a snapshot may make a replica do this). */
  drop(key: string): boolean {
    return this.slots.delete(key);
  }

  /** Every entry, tombstones included. */
  entries(): IterableIterator<Entry> {
    return this.slots.values();
  }

  keys(): IterableIterator<string> {
    return this.slots.keys();
  }

  /** Number of entries, tombstones included. */
  get size(): number {
    return this.slots.size;
  }
}
