//! Unit tests of `Document`, one rule each: the original project's cases (add, remove,
//! update, merge, concurrent add and remove), the seq index (`changes_since`, restore,
//! compaction horizon), the handshake's `entries` frames, and the ack and broadcast of
//! `apply_frame`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};
use syncd_crdt::canonical::canonicalize;
use syncd_crdt::{Clock, Document, Entry, ErrorCode, Limits, Timestamp, MAX_SEQ};

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// An entry from its key, ts and value JSON text (`None` for a tombstone).
fn entry(key: &str, at: &str, value: Option<&str>) -> Entry<'static> {
    let value = value.map(|v| canonicalize(v).unwrap().into_owned().into());
    Entry::new(key.to_owned(), ts(at), value, &Limits::default()).unwrap()
}

fn live(key: &str, at: &str, value: &str) -> Entry<'static> {
    entry(key, at, Some(value))
}

fn dead(key: &str, at: &str) -> Entry<'static> {
    entry(key, at, None)
}

/// Every entry, tombstones included, as (key, ts, value text, seq), sorted by key.
fn state(doc: &Document) -> Vec<(String, String, Option<String>, u64)> {
    let mut all: Vec<_> = doc
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

/// Every entry without its seq: what must agree between replicas.
fn content(doc: &Document) -> Vec<(String, String, Option<String>)> {
    state(doc)
        .into_iter()
        .map(|(k, t, v, _)| (k, t, v))
        .collect()
}

/// `changes_since(since)` as (key, seq) pairs.
fn changes(doc: &Document, since: u64) -> Vec<(String, u64)> {
    doc.changes_since(since)
        .map(|e| (e.key.to_owned(), e.seq))
        .collect()
}

const T1: &str = "1764028800001-00000-a";
const T2: &str = "1764028800002-00000-a";
const T3: &str = "1764028800003-00000-a";
const T4: &str = "1764028800004-00000-a";
const T5: &str = "1764028800005-00000-a";

// ------------------------------------------------------------------ the original cases

#[test]
fn add_then_lookup() {
    let mut doc = Document::default();
    assert_eq!(doc.lookup("title"), None);
    assert!(doc.merge(&live("title", T1, r#"{"text": "hello"}"#)));
    assert_eq!(doc.lookup("title"), Some(r#"{"text":"hello"}"#));
    assert_eq!(doc.get("title").unwrap().ts(), ts(T1));
    assert_eq!(
        (doc.seq(), doc.live_count(), doc.tombstone_count()),
        (1, 1, 0)
    );
}

#[test]
fn remove_after_add_hides_the_key_and_keeps_a_tombstone() {
    let mut doc = Document::default();
    doc.merge(&live("k", T1, "1"));
    assert!(doc.merge(&dead("k", T2)));
    assert_eq!(doc.lookup("k"), None);
    let kept = doc.get("k").expect("the tombstone is kept");
    assert_eq!((kept.value, kept.ts(), kept.seq), (None, ts(T2), 2));
    assert_eq!(doc.keys().count(), 0);
    assert_eq!((doc.live_count(), doc.tombstone_count()), (0, 1));
    // A late write older than the delete cannot resurrect the key.
    assert!(!doc.merge(&live("k", "1764028800001-00005-z", "2")));
    assert_eq!(doc.lookup("k"), None);
}

#[test]
fn update_replaces_the_value() {
    let mut doc = Document::default();
    doc.merge(&live("k", T1, r#""old""#));
    assert!(doc.merge(&live("k", T2, r#""new""#)));
    assert_eq!(doc.lookup("k"), Some(r#""new""#));
    assert_eq!((doc.seq(), doc.live_count()), (2, 1));
    // The older write arriving late is ignored.
    assert!(!doc.merge(&live("k", T1, r#""old""#)));
    assert_eq!(doc.lookup("k"), Some(r#""new""#));
    assert_eq!(doc.seq(), 2);
}

#[test]
fn add_after_remove_brings_the_key_back() {
    let mut doc = Document::default();
    doc.merge(&live("k", T1, "1"));
    doc.merge(&dead("k", T2));
    assert!(doc.merge(&live("k", T3, "3")));
    assert_eq!(doc.lookup("k"), Some("3"));
    assert_eq!((doc.live_count(), doc.tombstone_count()), (1, 0));
}

#[test]
fn concurrent_add_and_remove_at_an_equal_timestamp_add_wins() {
    for add_first in [true, false] {
        let mut doc = Document::default();
        let (add, remove) = (live("k", T1, r#""added""#), dead("k", T1));
        if add_first {
            assert!(doc.merge(&add));
            assert!(!doc.merge(&remove), "the tombstone loses to the live entry");
        } else {
            assert!(doc.merge(&remove));
            assert!(doc.merge(&add), "the live entry beats the tombstone");
        }
        assert_eq!(
            doc.lookup("k"),
            Some(r#""added""#),
            "add first: {add_first}"
        );
        assert_eq!(doc.tombstone_count(), 0);
    }
}

#[test]
fn equal_timestamps_pick_the_greater_canonical_text() {
    let mut doc = Document::default();
    doc.merge(&live("k", T1, r#""a""#));
    assert!(doc.merge(&live("k", T1, "1")), "0x31 beats 0x22");
    assert!(!doc.merge(&live("k", T1, r#""z""#)));
    assert!(
        !doc.merge(&live("k", T1, "1.0")),
        "the same canonical value is ignored"
    );
    assert_eq!(doc.lookup("k"), Some("1"));
    assert_eq!(doc.seq(), 2);
}

#[test]
fn multiple_keys_are_independent() {
    let mut doc = Document::default();
    let outcome = doc.merge_all(&[
        live("a", T1, "1"),
        live("b", T1, "2"),
        live("c", T2, "3"),
        dead("a", T3),
        live("b", T1, "1"),
    ]);
    assert_eq!((outcome.applied, outcome.ignored, outcome.seq), (4, 1, 4));
    assert_eq!(doc.lookup("a"), None);
    assert_eq!(doc.lookup("b"), Some("2"));
    assert_eq!(doc.lookup("c"), Some("3"));
    let mut keys: Vec<&str> = doc.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!((doc.live_count(), doc.tombstone_count()), (2, 1));
}

#[test]
fn merging_two_replicas_that_wrote_the_same_key() {
    for tui_merges_first in [true, false] {
        let mut tui_clock = Clock::new("tui-3f9a").unwrap();
        let mut web_clock = Clock::new("web-77c1").unwrap();
        let (mut tui, mut web) = (Document::default(), Document::default());
        // Both write "title" in the same physical millisecond: the node breaks the tie.
        let from_tui = tui_clock.tick(1_764_028_800_000).unwrap().to_string();
        let from_web = web_clock.tick(1_764_028_800_000).unwrap().to_string();
        assert!(from_web > from_tui);
        tui.merge(&live("title", &from_tui, r#""tui""#));
        web.merge(&live("title", &from_web, r#""web""#));
        let later = tui_clock.tick(1_764_028_800_001).unwrap().to_string();
        tui.merge(&live("body", &later, r#""text""#));

        let (first, second) = if tui_merges_first {
            let first = tui.merge_document(&web);
            (first, web.merge_document(&tui))
        } else {
            let first = web.merge_document(&tui);
            (first, tui.merge_document(&web))
        };
        if tui_merges_first {
            // web's title wins on tui; then web gets body and already has its title.
            assert_eq!((first.applied, first.ignored), (1, 0));
            assert_eq!((second.applied, second.ignored), (1, 1));
        } else {
            // web keeps its title and gets body; then tui takes web's title.
            assert_eq!((first.applied, first.ignored), (1, 1));
            assert_eq!((second.applied, second.ignored), (1, 1));
        }
        assert_eq!(content(&tui), content(&web));
        assert_eq!(tui.lookup("title"), Some(r#""web""#));
        assert_eq!(tui.get("title").unwrap().ts().to_string(), from_web);
        assert_eq!(web.lookup("body"), Some(r#""text""#));
    }
}

#[test]
fn merge_document_returns_what_it_applied() {
    let mut a = Document::default();
    a.merge_all(&[live("x", T2, "1"), live("y", T1, "1")]);
    let mut b = Document::default();
    b.merge_all(&[live("x", T1, "2"), live("z", T1, "3")]);
    let outcome = b.merge_document(&a);
    assert_eq!((outcome.applied, outcome.ignored, outcome.seq), (2, 0, 4));
    let outcome = a.merge_document(&b);
    assert_eq!((outcome.applied, outcome.ignored, outcome.seq), (1, 2, 3));
    assert_eq!(content(&a), content(&b));
}

#[test]
fn concurrent_use_from_several_threads() {
    const THREADS: usize = 4;
    const WRITES: usize = 250;
    let doc = Arc::new(Mutex::new(Document::default()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let doc = Arc::clone(&doc);
            thread::spawn(move || {
                let mut clock = Clock::new(&format!("node-{t}")).unwrap();
                let mut written = Vec::with_capacity(WRITES);
                let mut applied = 0;
                for i in 0..WRITES {
                    // Shared keys, the same few physical times: ties and races on purpose.
                    let key = format!("k{}", i % 20);
                    let at = clock.tick(1_764_028_800_000 + (i / 50) as u64).unwrap();
                    let e = if i % 7 == 0 {
                        dead(&key, &at.to_string())
                    } else {
                        live(&key, &at.to_string(), &format!("[{t},{i}]"))
                    };
                    if doc.lock().unwrap().merge(&e) {
                        applied += 1;
                    }
                    written.push(e);
                }
                (written, applied)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut applied = 0;
    for handle in handles {
        let (written, n) = handle.join().unwrap();
        all.extend(written);
        applied += n;
    }
    let doc = doc.lock().unwrap();
    assert_eq!(
        doc.seq(),
        applied as u64,
        "every applied write took one seq"
    );
    // The result is the greatest write per key, whatever the interleaving.
    let mut expected: BTreeMap<String, &Entry<'_>> = BTreeMap::new();
    for e in &all {
        let slot = expected.entry(e.key.to_string()).or_insert(e);
        if e.ts > slot.ts {
            *slot = e;
        }
    }
    let expected: Vec<_> = expected
        .values()
        .map(|e| {
            (
                e.key.to_string(),
                e.ts.to_string(),
                e.value.as_deref().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(content(&doc), expected);
    let sequential = {
        let mut d = Document::default();
        d.merge_all(&all);
        d
    };
    assert_eq!(content(&doc), content(&sequential));
}

// ------------------------------------------------------------------ the seq index

#[test]
fn seq_is_assigned_to_applied_entries_only() {
    let mut doc = Document::default();
    assert_eq!(doc.seq(), 0);
    assert!(doc.merge(&live("a", T2, "1")));
    assert!(!doc.merge(&live("a", T1, "2")));
    assert!(doc.merge(&live("b", T1, "2")));
    assert!(doc.merge(&dead("a", T3)));
    assert_eq!(doc.seq(), 3);
    assert_eq!(doc.get("a").unwrap().seq, 3);
    assert_eq!(doc.get("b").unwrap().seq, 2);
    let outcome = doc.merge_all(&[live("b", T1, "2"), live("c", T1, "3")]);
    assert_eq!((outcome.applied, outcome.ignored, outcome.seq), (1, 1, 4));
}

#[test]
fn changes_since_is_in_seq_order_and_skips_stale_entries() {
    let mut doc = Document::default();
    doc.merge_all(&[
        live("a", T1, "1"),
        live("b", T1, "1"),
        live("c", T1, "1"),
        live("a", T2, "2"),
        dead("b", T3),
    ]);
    assert_eq!(
        changes(&doc, 0),
        [("c".into(), 3), ("a".into(), 4), ("b".into(), 5)]
    );
    assert_eq!(changes(&doc, 3), [("a".into(), 4), ("b".into(), 5)]);
    assert_eq!(changes(&doc, 4), [("b".into(), 5)]);
    assert!(changes(&doc, 5).is_empty());
    assert!(changes(&doc, 99).is_empty());
    let tombstone = doc.changes_since(4).next().unwrap();
    assert_eq!((tombstone.value, tombstone.ts()), (None, ts(T3)));
}

#[test]
fn changes_since_survives_log_compaction() {
    let mut doc = Document::default();
    let mut clock = Clock::new("a").unwrap();
    // Far more rewrites of two keys than the log keeps before compacting itself.
    for i in 0..5000u64 {
        let at = clock.tick(1_764_028_800_000).unwrap().to_string();
        let key = if i % 2 == 0 { "even" } else { "odd" };
        assert!(doc.merge(&live(key, &at, &i.to_string())));
    }
    assert_eq!(doc.seq(), 5000);
    // i = 4998 ("even") took seq 4999, i = 4999 ("odd") took seq 5000.
    assert_eq!(
        changes(&doc, 0),
        [("even".into(), 4999), ("odd".into(), 5000)]
    );
    assert_eq!(changes(&doc, 4999), [("odd".into(), 5000)]);
    assert_eq!(doc.lookup("even"), Some("4998"));
}

#[test]
fn tombstone_counts_follow_adds_and_removes() {
    let mut doc = Document::default();
    doc.merge(&dead("ghost", T1));
    assert_eq!(
        (doc.live_count(), doc.tombstone_count()),
        (0, 1),
        "a delete of an unseen key"
    );
    doc.merge(&live("a", T1, "1"));
    doc.merge(&live("b", T1, "1"));
    doc.merge(&dead("a", T2));
    assert_eq!((doc.live_count(), doc.tombstone_count()), (1, 2));
    doc.merge(&dead("a", T3));
    assert_eq!(
        (doc.live_count(), doc.tombstone_count()),
        (1, 2),
        "a tombstone replacing a tombstone"
    );
    doc.merge(&live("a", T4, "4"));
    doc.merge(&live("ghost", T4, "4"));
    assert_eq!((doc.live_count(), doc.tombstone_count()), (3, 0));
    assert_eq!(doc.entries().count(), 3);
}

#[test]
fn purge_tombstones_drops_only_older_tombstones_and_raises_the_horizon() {
    let mut doc = Document::default();
    doc.merge_all(&[
        live("live", T1, "1"),                 // seq 1
        dead("old", T1),                       // seq 2
        dead("new", T5),                       // seq 3
        live("later", T2, "2"),                // seq 4
        dead("edge", "1764028800003-00000-b"), // seq 5
    ]);
    // Strictly older than `before`, by the whole timestamp (node included).
    assert_eq!(doc.purge_tombstones(&ts("1764028800003-00000-a")), 1);
    assert_eq!(doc.horizon(), 2);
    assert!(doc.get("old").is_none());
    assert!(
        doc.get("edge").is_some(),
        "an equal wall and counter with a greater node is kept"
    );
    assert_eq!(
        doc.purge_tombstones(&ts("1764028800003-00000-b")),
        0,
        "an equal ts is kept"
    );
    assert_eq!(doc.horizon(), 2, "purging nothing leaves the horizon");
    assert_eq!(doc.purge_tombstones(&ts("1764028800003-00000-c")), 1);
    assert_eq!(doc.horizon(), 5);
    // The live entries and the newer tombstone are intact, and still indexed.
    assert_eq!(doc.lookup("live"), Some("1"));
    assert_eq!(doc.lookup("later"), Some("2"));
    assert_eq!(doc.get("new").unwrap().seq, 3);
    assert_eq!((doc.live_count(), doc.tombstone_count()), (2, 1));
    assert_eq!(
        changes(&doc, 0),
        [("live".into(), 1), ("new".into(), 3), ("later".into(), 4)]
    );
    // Writing after a purge still finds the right slots.
    assert!(doc.merge(&live("live", T3, "3")));
    assert!(!doc.merge(&live("new", T4, "4")));
    assert_eq!(doc.lookup("live"), Some("3"));
    assert_eq!(doc.seq(), 6);
    // A purge of an older-seq tombstone never lowers the horizon.
    assert_eq!(doc.purge_tombstones(&ts("9999999999999-99999-z")), 1);
    assert_eq!(doc.horizon(), 5, "the dropped tombstone had seq 3");
    assert_eq!(doc.tombstone_count(), 0);
}

#[test]
fn restore_all_keeps_the_greatest_seq_per_key_and_raises_the_head() {
    let mut doc = Document::default();
    doc.restore_all(vec![
        (live("a", T2, "2"), 5),
        (live("b", T1, "1"), 2),
        (live("a", T1, "1"), 3),
        (dead("c", T3), 7),
    ])
    .unwrap();
    assert_eq!(doc.seq(), 7);
    assert_eq!(doc.lookup("a"), Some("2"));
    assert_eq!(doc.get("a").unwrap().seq, 5);
    assert_eq!((doc.live_count(), doc.tombstone_count()), (2, 1));
    assert_eq!(
        changes(&doc, 0),
        [("b".into(), 2), ("a".into(), 5), ("c".into(), 7)]
    );
    assert_eq!(changes(&doc, 4), [("a".into(), 5), ("c".into(), 7)]);
    // A second batch with lower seqs still leaves changes_since in seq order.
    doc.restore_all(vec![(live("d", T1, "4"), 4), (live("b", T1, "0"), 1)])
        .unwrap();
    assert_eq!(
        doc.lookup("b"),
        Some("1"),
        "seq 1 is older than the kept seq 2"
    );
    assert_eq!(
        changes(&doc, 0),
        [
            ("b".into(), 2),
            ("d".into(), 4),
            ("a".into(), 5),
            ("c".into(), 7)
        ]
    );
    // New writes continue after the head.
    assert!(doc.merge(&live("e", T1, "5")));
    assert_eq!(doc.get("e").unwrap().seq, 8);
}

#[test]
fn set_position_sets_head_and_horizon_within_bounds() {
    let mut doc = Document::default();
    doc.restore_all(vec![(live("a", T1, "1"), 7)]).unwrap();
    doc.set_position(20, 4).unwrap();
    assert_eq!((doc.seq(), doc.horizon()), (20, 4));
    assert!(doc.merge(&live("b", T1, "1")));
    assert_eq!(doc.get("b").unwrap().seq, 21);
    doc.set_position(3, 50).unwrap();
    assert_eq!(
        (doc.seq(), doc.horizon()),
        (21, 21),
        "never below the greatest seq held"
    );
    let mut empty = Document::default();
    empty.set_position(0, 9).unwrap();
    assert_eq!((empty.seq(), empty.horizon()), (0, 0));
}

// ------------------------------------------------------------------ entries frames

fn frame_entries(frame: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(frame).unwrap();
    assert_eq!(v["type"], "entries");
    v["entries"].as_array().unwrap().clone()
}

/// The core's wire form of every entry `entries_frames(since, _)` must send, in order.
fn wire(doc: &Document, since: Option<u64>) -> Vec<String> {
    let views: Vec<_> = match since {
        None => doc.entries().collect(),
        Some(s) => doc.changes_since(s).collect(),
    };
    views
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            e.write_json(&mut out);
            String::from_utf8(out).unwrap()
        })
        .collect()
}

const FRAME_HEAD: &str = r#"{"type":"entries","entries":["#;
const FRAME_TAIL: &str = "]}";

#[test]
fn entries_frames_split_by_max_frame_bytes_and_never_exceed_it() {
    let mut doc = Document::default();
    let mut clock = Clock::new("srv-1").unwrap();
    for i in 0..60 {
        let at = clock.tick(1_764_028_800_000).unwrap().to_string();
        let key = format!("key {i} \u{1F600}");
        if i % 5 == 0 {
            doc.merge(&dead(&key, &at));
        } else {
            let value = format!("\"{}\"", "\u{e9}\\\"".repeat(i * 3 % 17));
            doc.merge(&live(&key, &at, &value));
        }
    }
    // Rewrite some keys so that the delta skips stale log entries.
    for i in (0..60).step_by(7) {
        let at = clock.tick(1_764_028_800_000).unwrap().to_string();
        doc.merge(&live(&format!("key {i} \u{1F600}"), &at, "[]"));
    }
    let largest = wire(&doc, None).iter().map(String::len).max().unwrap();
    let overhead = FRAME_HEAD.len() + FRAME_TAIL.len();
    let mut split = false;
    for max in [overhead + largest, overhead + largest + 1, 300, 1000, 4096] {
        for since in [None, Some(0), Some(30), Some(65)] {
            let expected = wire(&doc, since);
            let frames = doc.entries_frames(since, max);
            split |= frames.len() > 1;
            let mut next = 0;
            for (i, frame) in frames.iter().enumerate() {
                assert!(
                    frame.len() <= max,
                    "frame {i} is {} > {max} bytes",
                    frame.len()
                );
                let count = frame_entries(frame).len();
                assert!(count > 0, "no empty frames");
                let inner = &frame[FRAME_HEAD.len()..frame.len() - FRAME_TAIL.len()];
                assert_eq!(inner, expected[next..next + count].join(","));
                next += count;
                if let Some(first_of_next) = expected.get(next) {
                    // Greedy: the next entry did not fit in this frame.
                    assert!(
                        frame.len() + 1 + first_of_next.len() > max,
                        "frame {i} not full"
                    );
                }
            }
            assert_eq!(
                next,
                expected.len(),
                "max {max}, since {since:?}: every entry sent"
            );
        }
    }
    assert!(split, "small limits do split");
    assert_eq!(wire(&doc, Some(0)).len(), 60);
    assert!(doc.entries_frames(Some(doc.seq()), 300).is_empty());
    assert!(Document::default().entries_frames(None, 300).is_empty());
}

#[test]
fn an_entry_larger_than_max_frame_bytes_goes_alone_in_its_frame() {
    let mut doc = Document::default();
    doc.merge(&live("small", T1, "1"));
    doc.merge(&live("big", T2, &format!("\"{}\"", "x".repeat(500))));
    doc.merge(&live("tiny", T3, "2"));
    let frames = doc.entries_frames(Some(0), 200);
    let keys: Vec<Vec<String>> = frames
        .iter()
        .map(|f| {
            frame_entries(f)
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(keys, [vec!["small"], vec!["big"], vec!["tiny"]]);
    assert!(frames[1].len() > 200);
    assert!(frames[0].len() <= 200 && frames[2].len() <= 200);
}

#[test]
fn entries_frames_hold_the_wire_form_that_parses_back() {
    let mut doc = Document::default();
    doc.merge(&live(
        "quote\" and \\ and \u{1}",
        T1,
        r#"{"b": [1.0], "a": "\u00e9"}"#,
    ));
    doc.merge(&dead("gone", T2));
    let frames = doc.entries_frames(None, 1 << 20);
    assert_eq!(
        frames,
        [concat!(
            r#"{"type":"entries","entries":["#,
            r#"{"key":"quote\" and \\ and \u0001","ts":"1764028800001-00000-a","value":{"a":"é","b":[1]}},"#,
            r#"{"key":"gone","ts":"1764028800002-00000-a","deleted":true}]}"#
        )]
    );
    for e in frame_entries(&frames[0]) {
        let text = serde_json::to_string(&e).unwrap();
        let parsed = Entry::from_json(&text, &Limits::default()).unwrap();
        let held = doc.get(&parsed.key).unwrap();
        assert_eq!(
            (parsed.ts, parsed.value.as_deref()),
            (held.ts(), held.value)
        );
    }
}

// ------------------------------------------------------------------ apply_frame

#[test]
fn apply_frame_answers_with_ack_and_broadcast() {
    let mut doc = Document::default();
    doc.merge(&live("k", T3, "0"));
    let frame = |id: u64| {
        json!({
            "type": "ops", "id": id,
            "ops": [
                {"key": "a", "ts": T1, "value": {"z": 1.0, "y": "\u{e9}"}},
                {"key": "k", "ts": T2, "value": "older"},
                {"key": "k", "ts": T4, "deleted": true},
            ]
        })
        .to_string()
    };
    let outcome = doc.apply_frame(&frame(17), None).unwrap();
    assert_eq!(
        outcome.ack_json(),
        r#"{"type":"ack","id":17,"seq":3,"applied":2,"ignored":1}"#
    );
    assert_eq!(
        outcome.broadcast_json("tui-3f9a").unwrap(),
        concat!(
            r#"{"type":"ops","seq":3,"origin":"tui-3f9a","ops":["#,
            r#"{"key":"a","ts":"1764028800001-00000-a","value":{"y":"é","z":1}},"#,
            r#"{"key":"k","ts":"1764028800004-00000-a","deleted":true}]}"#
        )
    );
    assert_eq!(doc.lookup("a"), Some(r#"{"y":"é","z":1}"#));
    assert_eq!(doc.lookup("k"), None);

    // A message whose entries all lose: the ack repeats the head, and nobody is told.
    let again = doc.apply_frame(&frame(18), None).unwrap();
    assert_eq!(
        again.ack_json(),
        r#"{"type":"ack","id":18,"seq":3,"applied":0,"ignored":3}"#
    );
    assert_eq!(again.broadcast_json("tui-3f9a"), None);
    assert_eq!(again.ops_json, "");
}

#[test]
fn apply_frame_applies_nothing_when_one_entry_is_invalid() {
    let mut doc = Document::default();
    let frame = json!({
        "type": "ops", "id": 4,
        "ops": [
            {"key": "a", "ts": T1, "value": 1},
            {"key": "b", "ts": T1, "value": 2, "deleted": true},
        ]
    })
    .to_string();
    let err = doc.apply_frame(&frame, None).unwrap_err();
    assert_eq!(
        (err.code, err.entry, err.id),
        (ErrorCode::BadMessage, Some(1), Some(4))
    );
    assert!(err.message.starts_with("ops[1]: "), "{}", err.message);
    assert_eq!((doc.seq(), doc.entries().count()), (0, 0));
}

#[test]
fn apply_frame_checks_the_document_limits() {
    let mut doc = Document::new(Limits {
        max_value_bytes: 5,
        max_ops: 2,
    });
    let op = |v: &str| format!(r#"{{"key":"k","ts":"{T1}","value":{v}}}"#);
    let frame = |ops: &[String]| format!(r#"{{"type":"ops","id":1,"ops":[{}]}}"#, ops.join(","));
    assert_eq!(
        doc.apply_frame(&frame(&[op("12345")]), None)
            .unwrap()
            .applied,
        1
    );
    let err = doc.apply_frame(&frame(&[op("123456")]), None).unwrap_err();
    assert_eq!((err.code, err.entry), (ErrorCode::TooLarge, Some(0)));
    // Limits apply to canonical text: 1e5 is 100000, six bytes.
    let err = doc.apply_frame(&frame(&[op("1e5")]), None).unwrap_err();
    assert_eq!(err.code, ErrorCode::TooLarge);
    let err = doc
        .apply_frame(&frame(&[op("1"), op("2"), op("3")]), None)
        .unwrap_err();
    assert_eq!(
        (err.code, err.entry, err.id),
        (ErrorCode::TooLarge, None, Some(1))
    );
    assert_eq!(doc.seq(), 1);
}

#[test]
fn restore_refuses_seqs_no_client_can_hold() {
    let mut doc = Document::default();
    for seq in [0, MAX_SEQ + 1, u64::MAX] {
        assert!(
            doc.restore_all(vec![(live("a", T1, "1"), seq)]).is_err(),
            "{seq}"
        );
    }
    assert!(doc.set_position(MAX_SEQ + 1, 0).is_err());
    assert_eq!(
        (doc.seq(), doc.live_count()),
        (0, 0),
        "nothing was restored"
    );
    doc.restore_all(vec![(live("a", T1, "1"), MAX_SEQ)])
        .unwrap();
    assert_eq!(doc.seq(), MAX_SEQ);
}
