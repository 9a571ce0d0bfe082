//! The replicated document: a Last-Write-Wins element dictionary with a sequence index.
//!
//! For every key the document keeps one slot, the winning entry of all writes it has
//! seen (contract §1). Every entry that wins takes the next sequence number, and a log
//! ordered by sequence number lets [`Document::changes_since`] start where the caller
//! left off instead of scanning the whole document.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::entry::{write_entry_json, Entry, Limits};
use crate::error::{CrdtError, Result};
use crate::growth;
use crate::texts::{Span, Texts};
use crate::timestamp::{unpack, Timestamp};

/// The greatest seq: seqs travel as JSON numbers, which every client holds exactly up to
/// 2^53 − 1.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The winning entry for one key: 32 bytes, its key and value in [`Document::texts`].
struct Slot {
    /// Wall and counter of the timestamp, packed.
    clock: u64,
    /// The sequence number this entry took when it was applied.
    seq: u64,
    text: Span,
    /// The timestamp's node, interned in [`Document::nodes`].
    node: u32,
}

/// One record of the seq log: a seq and the slot that took it. Packed to 12 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Logged {
    seq: u64,
    slot: u32,
}

impl Logged {
    fn new(seq: u64, slot: u32) -> Self {
        Logged { seq, slot }
    }

    fn seq(self) -> u64 {
        self.seq
    }
}

/// A read-only view of one entry of a document, with the sequence number it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'d> {
    /// The key.
    pub key: &'d str,
    /// The canonical JSON text of the value, or `None` for a tombstone.
    pub value: Option<&'d str>,
    /// The sequence number the entry took when it was applied.
    pub seq: u64,
    wall: u64,
    counter: u32,
    node: &'d str,
}

impl EntryView<'_> {
    /// The entry's timestamp.
    pub fn ts(&self) -> Timestamp {
        Timestamp::new(self.wall, self.counter, self.node)
            .expect("a stored timestamp was valid when it was stored")
    }

    /// Appends the entry's wire form.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_entry_json(out, self.key, self.ts().as_str(), self.value);
    }

    /// An owned [`Entry`] with the same content.
    pub fn to_entry(&self) -> Entry<'static> {
        Entry {
            key: self.key.to_owned().into(),
            ts: self.ts(),
            value: self.value.map(|v| v.to_owned().into()),
        }
    }
}

/// What merging a batch of entries did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    /// Entries that won and took a sequence number.
    pub applied: usize,
    /// Entries that lost to what the document already held.
    pub ignored: usize,
    /// The document's head once the batch is merged.
    pub seq: u64,
}

/// A Last-Write-Wins element dictionary.
pub struct Document {
    slots: Vec<Slot>,
    texts: Texts,
    /// Slot indices, hashed by their slot's key.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Increasing seq order; a record is stale once its slot took a newer seq.
    log: Vec<Logged>,
    nodes: Vec<Box<str>>,
    node_ids: HashMap<Box<str>, u32>,
    head: u64,
    horizon: u64,
    tombstones: usize,
    /// XOR of [`entry_digest`] over the live entries, kept up to date by [`Document::put`].
    digest: u64,
    limits: Limits,
}

impl Default for Document {
    fn default() -> Self {
        Document::new(Limits::default())
    }
}

impl Document {
    /// An empty document whose incoming entries are checked against `limits`.
    pub fn new(limits: Limits) -> Self {
        Document {
            slots: Vec::new(),
            texts: Texts::default(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            log: Vec::new(),
            nodes: Vec::new(),
            node_ids: HashMap::new(),
            head: 0,
            horizon: 0,
            tombstones: 0,
            digest: 0,
            limits,
        }
    }

    /// The limits incoming entries are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The head: the sequence number of the last applied entry (0 for a new document).
    pub fn seq(&self) -> u64 {
        self.head
    }

    /// The compaction horizon: a resume point below it can no longer get a delta.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// The number of live keys.
    pub fn live_count(&self) -> usize {
        self.slots.len() - self.tombstones
    }

    /// The number of tombstones kept.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones
    }

    /// A digest of the live entries (their keys and timestamps), the same on every
    /// replica that holds the same live entries, whatever the order they arrived in.
    /// Tombstones are left out so that purging them (on each replica's own schedule)
    /// does not make equal replicas differ.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The winning entry for `key`, live or tombstone.
    pub fn get(&self, key: &str) -> Option<EntryView<'_>> {
        self.find(key).map(|i| self.view(i))
    }

    /// The canonical JSON text of `key`'s value, if the key is live.
    pub fn lookup(&self, key: &str) -> Option<&str> {
        self.find(key)
            .and_then(|i| self.texts.value(self.slots[i as usize].text))
    }

    /// Every entry, live and tombstone, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = EntryView<'_>> {
        (0..self.slots.len() as u32).map(|i| self.view(i))
    }

    /// The live keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|s| !s.text.is_tombstone())
            .map(|s| self.texts.key(s.text))
    }

    /// The entries whose seq is greater than `since`, in seq order.
    pub fn changes_since(&self, since: u64) -> impl Iterator<Item = EntryView<'_>> {
        let start = self.log.partition_point(|logged| logged.seq() <= since);
        self.log[start..]
            .iter()
            .filter(|logged| self.is_current(**logged))
            .map(|logged| self.view(logged.slot))
    }

    /// Merges one entry; returns whether it won (and so took the next seq).
    pub fn merge(&mut self, entry: &Entry<'_>) -> bool {
        let hash = self.hasher.hash_one(entry.key.as_bytes());
        let found = self.find_hashed(hash, &entry.key);
        self.merge_located(entry, hash, found)
    }

    /// Merges a batch of entries in order.
    pub fn merge_all(&mut self, entries: &[Entry<'_>]) -> MergeOutcome {
        self.merge_each(entries, |_| (), |_, _| ())
    }

    /// Merges a batch of entries in order, calling `applied` with each one that wins and
    /// `lost` with each one that loses, along with the entry that beat it.
    ///
    /// Every key is looked up before any is merged: the lookups are independent of each
    /// other, so the processor overlaps their cache misses, which dominate in a large
    /// document.
    pub fn merge_each<'e>(
        &mut self,
        entries: &[Entry<'e>],
        mut applied: impl FnMut(&Entry<'e>),
        mut lost: impl FnMut(&Entry<'e>, EntryView<'_>),
    ) -> MergeOutcome {
        let hashes: Vec<u64> = entries
            .iter()
            .map(|entry| self.hasher.hash_one(entry.key.as_bytes()))
            .collect();
        self.warm(&hashes);
        let located: Vec<(u64, Option<u32>)> = entries
            .iter()
            .zip(hashes)
            .map(|(entry, hash)| (hash, self.find_hashed(hash, &entry.key)))
            .collect();
        let mut outcome = MergeOutcome::default();
        for (entry, (hash, found)) in entries.iter().zip(located) {
            // A key new to the document may have been added by an earlier entry of the batch.
            let found = found.or_else(|| self.find_hashed(hash, &entry.key));
            if self.merge_located(entry, hash, found) {
                outcome.applied += 1;
                applied(entry);
            } else {
                outcome.ignored += 1;
                if let Some(i) = found {
                    lost(entry, self.view(i));
                }
            }
        }
        outcome.seq = self.head;
        outcome
    }

    /// Touches the slot and key each hash most likely refers to. The loads do not depend
    /// on each other, so their cache misses overlap instead of queueing one behind the
    /// other as they would inside each lookup.
    fn warm(&self, hashes: &[u64]) {
        let mut touched = 0u8;
        for &hash in hashes {
            if let Some(&i) = self.index.iter_hash(hash).next() {
                touched ^= self.texts.first_byte(self.slots[i as usize].text);
            }
        }
        std::hint::black_box(touched);
    }

    fn merge_located(&mut self, entry: &Entry<'_>, hash: u64, found: Option<u32>) -> bool {
        if let Some(i) = found {
            if !self.wins(entry, &self.slots[i as usize]) {
                return false;
            }
        }
        self.head += 1;
        self.put(found, hash, entry, self.head);
        true
    }

    /// Merges every entry of `other`, in its seq order.
    pub fn merge_document(&mut self, other: &Document) -> MergeOutcome {
        let entries: Vec<Entry<'static>> = other.changes_since(0).map(|e| e.to_entry()).collect();
        self.merge_all(&entries)
    }

    /// Puts back entries with the seqs they took before, as when loading a document from
    /// disk. For each key the entry with the greatest seq is kept; the head rises to the
    /// greatest seq restored.
    /// Every seq must be from 1 to [`MAX_SEQ`]; otherwise nothing is restored.
    pub fn restore_all(&mut self, mut batch: Vec<(Entry<'_>, u64)>) -> Result<()> {
        if let Some((_, seq)) = batch.iter().find(|(_, seq)| !(1..=MAX_SEQ).contains(seq)) {
            return Err(CrdtError::bad_message(format!(
                "seq {seq} is outside 1 to {MAX_SEQ}"
            )));
        }
        batch.sort_unstable_by_key(|(_, seq)| *seq);
        let mut restoring = self.restoring();
        for (entry, seq) in &batch {
            restoring.restore(entry, *seq)?;
        }
        Ok(())
    }

    /// Puts back entries one at a time, in any order, as they are read from disk: no
    /// batch of them is ever held. The seq order of the log is mended once, when the
    /// returned [`Restoring`] is dropped.
    pub fn restoring(&mut self) -> Restoring<'_> {
        Restoring {
            document: self,
            unordered: false,
        }
    }

    /// Runs `restore` on the document; if it fails and the document was new (nothing
    /// merged or restored yet), the document is new again: a rejected file or log
    /// restores nothing, although its records are restored as they are read.
    pub(crate) fn all_or_nothing<T, E>(
        &mut self,
        restore: impl FnOnce(&mut Document) -> Result<T, E>,
    ) -> Result<T, E> {
        let new = self.slots.is_empty() && self.head == 0 && self.horizon == 0;
        let outcome = restore(self);
        if outcome.is_err() && new {
            *self = Document::new(self.limits);
        }
        outcome
    }

    /// Restores one entry with its seq; returns whether the log stayed in seq order.
    fn restore(&mut self, entry: &Entry<'_>, seq: u64) -> bool {
        let hash = self.hasher.hash_one(entry.key.as_bytes());
        let found = self.find_hashed(hash, &entry.key);
        if found.is_some_and(|i| self.slots[i as usize].seq >= seq) {
            return true;
        }
        let in_order = self.log.last().is_none_or(|last| last.seq() < seq);
        self.put(found, hash, entry, seq);
        self.head = self.head.max(seq);
        in_order
    }

    /// Sets the head and horizon, as when loading a document from disk. The head never
    /// goes below the greatest seq the document holds.
    /// A head above [`MAX_SEQ`] is an error.
    pub fn set_position(&mut self, head: u64, horizon: u64) -> Result<()> {
        if head > MAX_SEQ {
            return Err(CrdtError::bad_message(format!(
                "head {head} is above {MAX_SEQ}"
            )));
        }
        let greatest = self.log.last().map_or(0, |last| last.seq());
        self.head = head.max(greatest);
        self.horizon = horizon.min(self.head);
        Ok(())
    }

    /// Drops the tombstones whose timestamp is older than `before`, raising the horizon
    /// to the greatest seq dropped. Returns how many were dropped.
    pub fn purge_tombstones(&mut self, before: &Timestamp) -> usize {
        let cutoff = (before.packed(), before.node());
        let (nodes, texts) = (&self.nodes, &mut self.texts);
        let old_len = self.slots.len();
        let mut highest = self.horizon;
        self.slots.retain(|s| {
            let purge = s.text.is_tombstone() && (s.clock, &*nodes[s.node as usize]) < cutoff;
            if purge {
                highest = highest.max(s.seq);
                texts.release(s.text);
            }
            !purge
        });
        let purged = old_len - self.slots.len();
        if purged > 0 {
            self.tombstones -= purged;
            self.horizon = highest;
            self.compact_texts_if_due();
            self.rebuild_indexes();
        }
        purged
    }

    /// Appends the JSON of an `entries` frame (or frames, each at most `max_frame_bytes`
    /// when the entries allow) for every entry with seq above `since`, or for every entry
    /// when `since` is `None`.
    pub fn entries_frames(&self, since: Option<u64>, max_frame_bytes: usize) -> Vec<String> {
        const HEAD: &[u8] = b"{\"type\":\"entries\",\"entries\":[";
        const TAIL: &[u8] = b"]}";
        let mut frames = Vec::new();
        let mut frame = Vec::from(HEAD);
        let mut entry = Vec::new();
        let mut write = |view: EntryView<'_>| {
            entry.clear();
            view.write_json(&mut entry);
            let empty = frame.len() == HEAD.len();
            if !empty && frame.len() + 1 + entry.len() + TAIL.len() > max_frame_bytes {
                frame.extend_from_slice(TAIL);
                frames.push(into_string(std::mem::replace(&mut frame, Vec::from(HEAD))));
            }
            if frame.len() > HEAD.len() {
                frame.push(b',');
            }
            frame.extend_from_slice(&entry);
        };
        match since {
            Some(since) => self.changes_since(since).for_each(&mut write),
            None => self.entries().for_each(&mut write),
        }
        if frame.len() > HEAD.len() {
            frame.extend_from_slice(TAIL);
            frames.push(into_string(frame));
        }
        frames
    }

    /// One `entries` frame of the entries with a seq above `after` and at most `until`,
    /// in seq order: as many as fit in `max_frame_bytes` (at least one). Returns the
    /// frame and the seq of its last entry, where the next frame starts; `None` when
    /// no entry is left.
    ///
    /// A snapshot sent a frame at a time, between which the document changes: an entry
    /// replaced meanwhile took a seq above `until` and is left out, so the frames hold
    /// each key's entry as of `until` unless a later change (which the receiver gets
    /// after the snapshot) replaced it.
    pub fn entries_frame(
        &self,
        after: u64,
        until: u64,
        max_frame_bytes: usize,
    ) -> Option<(String, u64)> {
        const HEAD: &[u8] = b"{\"type\":\"entries\",\"entries\":[";
        const TAIL: &[u8] = b"]}";
        let mut frame = Vec::from(HEAD);
        let mut entry = Vec::new();
        let mut last = None;
        for view in self
            .changes_since(after)
            .take_while(|view| view.seq <= until)
        {
            entry.clear();
            view.write_json(&mut entry);
            if last.is_some() {
                if frame.len() + 1 + entry.len() + TAIL.len() > max_frame_bytes {
                    break;
                }
                frame.push(b',');
            }
            frame.extend_from_slice(&entry);
            last = Some(view.seq);
        }
        let last = last?;
        frame.extend_from_slice(TAIL);
        Some((into_string(frame), last))
    }

    fn find(&self, key: &str) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(key.as_bytes()), key)
    }

    fn find_hashed(&self, hash: u64, key: &str) -> Option<u32> {
        let (slots, texts) = (&self.slots, &self.texts);
        self.index
            .find(hash, |&i| {
                texts.key_bytes(slots[i as usize].text) == key.as_bytes()
            })
            .copied()
    }

    /// Whether a log record is its slot's current entry (not replaced since).
    fn is_current(&self, logged: Logged) -> bool {
        self.slots[logged.slot as usize].seq == logged.seq()
    }

    fn view(&self, i: u32) -> EntryView<'_> {
        let slot = &self.slots[i as usize];
        let (wall, counter) = unpack(slot.clock);
        EntryView {
            key: self.texts.key(slot.text),
            value: self.texts.value(slot.text),
            seq: slot.seq,
            wall,
            counter,
            node: &self.nodes[slot.node as usize],
        }
    }

    /// The merge rule of contract §1: the greater timestamp wins; at an equal timestamp a
    /// live entry beats a tombstone, and the greater canonical value text wins.
    fn wins(&self, entry: &Entry<'_>, slot: &Slot) -> bool {
        let order = entry
            .ts
            .packed()
            .cmp(&slot.clock)
            .then_with(|| entry.ts.node().cmp(&self.nodes[slot.node as usize]));
        match order {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => match (entry.value.as_deref(), self.texts.value(slot.text)) {
                (Some(new), Some(old)) => new.as_bytes() > old.as_bytes(),
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }

    /// Stores `entry` with `seq`, in slot `found` or a new one.
    fn put(&mut self, found: Option<u32>, hash: u64, entry: &Entry<'_>, seq: u64) {
        let node = self.intern(entry.ts.node());
        let value = entry.value.as_deref();
        let old = found.map(|i| &self.slots[i as usize]);
        if let Some(old) = old {
            if old.text.is_tombstone() {
                self.tombstones -= 1;
            } else {
                let key = self.texts.key_bytes(old.text);
                self.digest ^= entry_digest(key, old.clock, &self.nodes[old.node as usize]);
            }
        }
        if value.is_some() {
            self.digest ^= entry_digest(entry.key.as_bytes(), entry.ts.packed(), entry.ts.node());
        } else {
            self.tombstones += 1;
        }
        let slot = Slot {
            clock: entry.ts.packed(),
            seq,
            text: self.texts.store(old.map(|s| s.text), &entry.key, value),
            node,
        };
        let i = match found {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                let i = self.slots.len() as u32;
                growth::reserve(&mut self.slots, 1);
                self.slots.push(slot);
                let (slots, texts, hasher) = (&self.slots, &self.texts, &self.hasher);
                self.index.insert_unique(hash, i, |&j| {
                    hasher.hash_one(texts.key_bytes(slots[j as usize].text))
                });
                i
            }
        };
        growth::reserve(&mut self.log, 1);
        self.log.push(Logged::new(seq, i));
        if self.log.len() > self.slots.len() + self.slots.len() / 4 + 1024 {
            let slots = &self.slots;
            self.log
                .retain(|logged| slots[logged.slot as usize].seq == logged.seq());
        }
        self.compact_texts_if_due();
    }

    fn compact_texts_if_due(&mut self) {
        if self.texts.compact_due() {
            self.texts
                .compact(self.slots.iter_mut().map(|slot| &mut slot.text));
        }
    }

    fn intern(&mut self, node: &str) -> u32 {
        if let Some(&id) = self.node_ids.get(node) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(node.into());
        self.node_ids.insert(node.into(), id);
        id
    }

    fn rebuild_indexes(&mut self) {
        let (slots, texts, hasher) = (&self.slots, &self.texts, &self.hasher);
        self.index.clear();
        for (i, slot) in slots.iter().enumerate() {
            self.index.insert_unique(
                hasher.hash_one(texts.key_bytes(slot.text)),
                i as u32,
                |&j| hasher.hash_one(texts.key_bytes(slots[j as usize].text)),
            );
        }
        self.log = slots
            .iter()
            .enumerate()
            .map(|(i, s)| Logged::new(s.seq, i as u32))
            .collect();
        self.log.sort_unstable_by_key(|logged| logged.seq());
    }
}

/// Entries being put back into a document (see [`Document::restoring`]).
pub struct Restoring<'d> {
    document: &'d mut Document,
    unordered: bool,
}

impl Restoring<'_> {
    /// Puts back one entry with the seq it took before: kept unless the document holds
    /// its key with a greater seq. The seq must be from 1 to [`MAX_SEQ`]. An error
    /// leaves the entries restored so far in the document.
    pub fn restore(&mut self, entry: &Entry<'_>, seq: u64) -> Result<()> {
        if !(1..=MAX_SEQ).contains(&seq) {
            return Err(CrdtError::bad_message(format!(
                "seq {seq} is outside 1 to {MAX_SEQ}"
            )));
        }
        if !self.document.restore(entry, seq) {
            self.unordered = true;
        }
        Ok(())
    }
}

impl Drop for Restoring<'_> {
    fn drop(&mut self) {
        if self.unordered {
            self.document
                .log
                .sort_unstable_by_key(|logged| logged.seq());
        }
    }
}

/// A 64-bit hash of an entry's key and timestamp: FNV-1a, then a SplitMix64 finish to
/// spread its bits before they are XORed together. Fixed (unlike the index's seeded
/// hasher) so that every process, of any build, computes the same digest.
fn entry_digest(key: &[u8], clock: u64, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = key
        .iter()
        .copied()
        .chain([0xff])
        .chain(clock.to_le_bytes())
        .chain(node.bytes());
    for byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("frames are built from UTF-8 strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_32_bytes_and_a_log_record_12() {
        // The per-entry memory of a large document (issue #14): keep it from creeping up.
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<Logged>(), 12);
    }
}
