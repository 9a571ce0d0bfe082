//! Helpers shared by the fuzz targets: a document's full state, an independent copy of a
//! document made through its on-disk form, and a small seeded document to apply frames to.
#![deny(missing_docs)]

use syncd_crdt::{Document, Limits};

/// A wall clock near the present (2025-11-25), the base of the generated timestamps.
pub const NOW_MS: u64 = 1_764_028_800_000;

/// Every entry, tombstones included, as (key, ts, value text, seq), sorted: two documents
/// hold the same entries exactly when their states are equal.
pub type State = Vec<(String, String, Option<String>, u64)>;

/// The full state of `doc`, seqs included.
pub fn state(doc: &Document) -> State {
    let mut all: State = doc
        .entries()
        .map(|e| {
            (
                e.key.to_owned(),
                e.ts().to_string(),
                e.value.map(str::to_owned),
                e.seq,
            )
        })
        .collect();
    all.sort();
    all
}

/// What replicas agree on: every key's winning (key, ts, value text), without seqs, which
/// depend on the order the entries arrived in.
pub fn content(doc: &Document) -> Vec<(String, String, Option<String>)> {
    state(doc)
        .into_iter()
        .map(|(key, ts, value, _)| (key, ts, value))
        .collect()
}

/// A copy of `doc` made the way the server reloads one: its TinyDB table restored into a
/// new document, then its head and horizon set.
pub fn copy_of(doc: &Document) -> Document {
    let mut copy = Document::new(*doc.limits());
    copy.restore_table_json(&doc.table_json())
        .expect("a document's own table restores");
    copy.set_position(doc.seq(), doc.horizon())
        .expect("a document's own position is valid");
    copy
}

/// Small limits, so that fuzzed frames reach `too_large` often.
pub const LIMITS: Limits = Limits {
    max_value_bytes: 64,
    max_ops: 8,
};

/// A document with small limits holding two live keys and a tombstone.
pub fn seeded() -> Document {
    let mut doc = Document::new(LIMITS);
    let frame = concat!(
        r#"{"type":"ops","id":1,"ops":["#,
        r#"{"key":"a","ts":"1764028800000-00000-n1","value":{"x":[1,"é"]}},"#,
        r#"{"key":"b","ts":"1764028800000-00000-n1","value":"two"},"#,
        r#"{"key":"é","ts":"1764028800000-00000-n1","deleted":true}]}"#
    );
    doc.apply_frame(frame, None)
        .expect("the seed frame is valid");
    doc
}
