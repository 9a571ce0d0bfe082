//! Structured: `ops` frames built from arbitrary writes, applied to replicas in different
//! orders, must converge (the merge is commutative, associative and idempotent).
//!
//! Replica A applies the frames in order, B in a shuffled order, C every accepted entry
//! as its own frame, last first. Then: all three hold the same entries; applying every
//! frame again to A, or merging B into A, changes nothing; A's on-disk form restores to
//! an equal document; its `entries` frames rebuild it; and purging tombstones keeps every
//! live entry.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Number, Value};
use syncd_crdt::{Document, Entry, Limits, Timestamp};
use syncd_crdt_fuzz::{content, copy_of, state, NOW_MS};

const KEYS: [&str; 5] = ["a", "b", "é", "😀", "\u{e000}"];
const NODES: [&str; 3] = ["n1", "n2", "z-9"];

#[derive(Arbitrary, Debug)]
enum Key {
    Common(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => json!(i),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Text(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Json::value).collect()),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Write {
    key: Key,
    wall: u8,
    counter: u8,
    node: u8,
    /// `None` for a delete.
    value: Option<Json>,
}

impl Write {
    fn wire(&self) -> Value {
        let key = match &self.key {
            Key::Common(i) => KEYS[usize::from(*i) % KEYS.len()].to_owned(),
            Key::Any(key) => key.clone(),
        };
        let ts = Timestamp::new(
            NOW_MS + u64::from(self.wall % 4),
            u32::from(self.counter % 3),
            NODES[usize::from(self.node) % NODES.len()],
        )
        .expect("the generated timestamps are valid");
        match &self.value {
            Some(value) => json!({"key": key, "ts": ts.as_str(), "value": value.value()}),
            None => json!({"key": key, "ts": ts.as_str(), "deleted": true}),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    frames: Vec<Vec<Write>>,
    shuffle: u64,
    since: u8,
    max_frame_bytes: u16,
    purge_wall: u8,
}

const LIMITS: Limits = Limits {
    max_value_bytes: 256,
    max_ops: 16,
};

fn frame(id: usize, ops: &[Value]) -> String {
    json!({"type": "ops", "id": id, "ops": ops}).to_string()
}

/// The indices `0..n` in an order drawn from `seed` (Fisher–Yates with a small LCG).
fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    order
}

fuzz_target!(|input: Input| {
    let frames: Vec<Vec<Value>> = input
        .frames
        .iter()
        .map(|writes| writes.iter().map(Write::wire).collect())
        .collect();
    let texts: Vec<String> = frames
        .iter()
        .enumerate()
        .map(|(id, ops)| frame(id, ops))
        .collect();

    let mut a = Document::new(LIMITS);
    let accepted: Vec<bool> = texts
        .iter()
        .map(|text| a.apply_frame(text, None).is_ok())
        .collect();

    let mut b = Document::new(LIMITS);
    for i in shuffled(texts.len(), input.shuffle) {
        // Whether a frame is valid does not depend on the document it is applied to.
        assert_eq!(b.apply_frame(&texts[i], None).is_ok(), accepted[i]);
    }

    let mut c = Document::new(LIMITS);
    let singles = frames
        .iter()
        .zip(&accepted)
        .filter(|(_, ok)| **ok)
        .flat_map(|(ops, _)| ops.iter());
    for op in singles.collect::<Vec<_>>().into_iter().rev() {
        c.apply_frame(&frame(0, std::slice::from_ref(op)), None)
            .expect("an entry of an accepted frame is valid on its own");
    }

    assert_eq!(content(&a), content(&b), "order changed the outcome");
    assert_eq!(
        content(&a),
        content(&c),
        "splitting frames changed the outcome"
    );

    // Idempotent: nothing applies twice.
    let head = a.seq();
    for text in &texts {
        if let Ok(outcome) = a.apply_frame(text, None) {
            assert_eq!(outcome.applied, 0, "a frame applied twice");
        }
    }
    assert_eq!(a.merge_document(&b).applied, 0);
    assert_eq!(a.seq(), head);

    // The on-disk form restores to the same document, seqs and changes included.
    let copy = copy_of(&a);
    assert_eq!(state(&copy), state(&a));
    assert_eq!(copy.seq(), a.seq());
    let since = u64::from(input.since) % (a.seq() + 2);
    let changes = |doc: &Document| -> Vec<(String, u64)> {
        doc.changes_since(since)
            .map(|e| (e.key.to_owned(), e.seq))
            .collect()
    };
    assert_eq!(changes(&copy), changes(&a));

    // The handshake's entries frames rebuild the document.
    let max_frame_bytes = usize::from(input.max_frame_bytes).max(1);
    let mut rebuilt = Document::new(LIMITS);
    for text in a.entries_frames(None, max_frame_bytes) {
        let frame: Value = serde_json::from_str(&text).expect("an entries frame is JSON");
        assert_eq!(frame["type"], "entries");
        let entries = frame["entries"].as_array().expect("entries is an array");
        assert!(
            text.len() <= max_frame_bytes || entries.len() == 1,
            "{text}"
        );
        for entry in entries {
            let text = entry.to_string();
            let entry = Entry::from_json(&text, &LIMITS).expect("a valid entry");
            assert!(rebuilt.merge(&entry));
        }
    }
    assert_eq!(content(&rebuilt), content(&a));
    let delta: usize = a
        .entries_frames(Some(since), max_frame_bytes)
        .iter()
        .map(|text| {
            let frame: Value = serde_json::from_str(text).expect("an entries frame is JSON");
            frame["entries"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(delta, changes(&a).len());

    // Purging tombstones keeps every live entry, and raises the horizon.
    let live = |doc: &Document| -> Vec<_> {
        content(doc)
            .into_iter()
            .filter(|(_, _, value)| value.is_some())
            .collect()
    };
    let before = live(&a);
    let cutoff =
        Timestamp::new(NOW_MS + u64::from(input.purge_wall % 5), 0, "n2").expect("a valid cutoff");
    let tombstones = a.tombstone_count();
    let purged = a.purge_tombstones(&cutoff);
    assert_eq!(a.tombstone_count(), tombstones - purged);
    assert_eq!(live(&a), before);
    assert!(a.horizon() <= a.seq());
    assert_eq!(state(&copy_of(&a)), state(&a));
});
