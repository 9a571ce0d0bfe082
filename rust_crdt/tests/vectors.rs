//! The shared conformance vectors in `tests/vectors/` (see its README), run against the
//! Rust core: timestamps, canonical JSON, the merge rule, wire entries and `ops` frames.
//! pytest and vitest read the same files, so every implementation agrees on them.

mod common;

use common::{state, State};

use std::borrow::Cow;
use std::path::PathBuf;

use serde_json::{Map, Value};
use syncd_crdt::canonical::{canonical_text, canonicalize};
use syncd_crdt::{Document, Entry, ErrorCode, Limits, SkewCheck, Timestamp};

/// Permutations are tried for cases of at most this many entries (6! = 720 orders).
const MAX_PERMUTED: usize = 6;
/// The default `max_skew`, used with the `now_ms` of a frame case.
const MAX_SKEW_MS: u64 = 60_000;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn list<'v>(doc: &'v Value, field: &str) -> &'v [Value] {
    doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field:?} must be an array"))
}

fn text<'v>(case: &'v Value, field: &str) -> &'v str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field:?} must be a string in {case}"))
}

fn name(case: &Value) -> &str {
    text(case, "name")
}

/// A string field of a case, with its `repeat` description (if any) expanded: every
/// occurrence of `placeholder` is replaced by `text` repeated `count` times.
fn expanded<'v>(case: &'v Value, field: &str) -> Cow<'v, str> {
    let raw = text(case, field);
    match case.get("repeat").and_then(|r| r.get(field)) {
        None => Cow::Borrowed(raw),
        Some(rep) => {
            let placeholder = text(rep, "placeholder");
            assert!(
                raw.contains(placeholder),
                "{}: {field} lacks its placeholder",
                name(case)
            );
            let count = rep["count"].as_u64().expect("repeat.count is an integer") as usize;
            Cow::Owned(raw.replace(placeholder, &text(rep, "text").repeat(count)))
        }
    }
}

fn code_of(case: &Value) -> ErrorCode {
    match text(case, "code") {
        "bad_json" => ErrorCode::BadJson,
        "bad_message" => ErrorCode::BadMessage,
        "too_large" => ErrorCode::TooLarge,
        "clock_skew" => ErrorCode::ClockSkew,
        other => panic!("unknown error code {other:?}"),
    }
}

// ------------------------------------------------------------------------ timestamps

#[test]
fn timestamps_ordered_are_strictly_increasing_by_parse_and_by_string() {
    let doc = load("timestamps.json");
    let ordered: Vec<&str> = list(&doc, "ordered")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ordered.len() >= 10);
    let parsed: Vec<Timestamp> = ordered
        .iter()
        .map(|t| Timestamp::parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}")))
        .collect();
    for i in 0..ordered.len() {
        assert_eq!(parsed[i].to_string(), ordered[i], "round trip");
        for j in i + 1..ordered.len() {
            assert!(
                ordered[i] < ordered[j],
                "{:?} < {:?} as strings",
                ordered[i],
                ordered[j]
            );
            assert!(
                parsed[i] < parsed[j],
                "{:?} < {:?} parsed",
                ordered[i],
                ordered[j]
            );
        }
    }
}

#[test]
fn timestamps_valid_parse_into_their_fields() {
    let doc = load("timestamps.json");
    for case in list(&doc, "valid") {
        let ts = text(case, "ts");
        let parsed = Timestamp::parse(ts).unwrap_or_else(|e| panic!("{ts:?}: {e}"));
        let wall = case["wall"].as_u64().unwrap();
        let counter = case["counter"].as_u64().unwrap() as u32;
        let node = text(case, "node");
        assert_eq!(
            (parsed.wall(), parsed.counter(), parsed.node()),
            (wall, counter, node),
            "{ts:?}"
        );
        assert_eq!(parsed.to_string(), ts, "{ts:?} formats back to itself");
        assert_eq!(Timestamp::new(wall, counter, node).unwrap(), parsed);
    }
}

#[test]
fn timestamps_invalid_are_bad_message() {
    let doc = load("timestamps.json");
    for case in list(&doc, "invalid") {
        let ts = text(case, "ts");
        let err = Timestamp::parse(ts).expect_err(&format!("{ts:?} ({})", text(case, "why")));
        assert_eq!(err.code, ErrorCode::BadMessage, "{ts:?}");
    }
}

// ------------------------------------------------------------------------ canonical

#[test]
fn canonical_cases_give_the_canonical_text_and_are_idempotent() {
    let doc = load("canonical.json");
    for case in list(&doc, "cases") {
        let (json, expected) = (text(case, "json"), text(case, "canonical"));
        let got = canonicalize(json).unwrap_or_else(|e| panic!("{}: {e}", name(case)));
        assert_eq!(got, expected, "{}", name(case));
        assert_eq!(
            canonicalize(expected).unwrap(),
            expected,
            "{} again",
            name(case)
        );
        // The same text must come out of a parsed value, as the Python binding uses it.
        let value: Value = serde_json::from_str(json).unwrap();
        assert_eq!(canonical_text(&value).unwrap(), expected, "{}", name(case));
    }
}

#[test]
fn canonical_invalid_are_rejected_with_their_code() {
    let doc = load("canonical.json");
    for case in list(&doc, "invalid") {
        let err = canonicalize(text(case, "json")).expect_err(name(case));
        assert_eq!(err.code, code_of(case), "{}", name(case));
    }
}

// ------------------------------------------------------------------------ merge

/// The expected state of a merge case: `{key: wire entry}`, values as canonical text.
fn expected_state(case: &Value) -> State {
    let expected = case["expected"].as_object().expect("expected is an object");
    let mut all: State = expected
        .iter()
        .map(|(key, entry)| {
            assert_eq!(entry["key"].as_str(), Some(key.as_str()), "{}", name(case));
            let value = match (entry.get("value"), entry.get("deleted")) {
                (Some(v), None) => Some(canonical_text(v).unwrap()),
                (None, Some(Value::Bool(true))) => None,
                _ => panic!("{}: malformed expected entry {entry}", name(case)),
            };
            (key.clone(), text(entry, "ts").to_owned(), value)
        })
        .collect();
    all.sort();
    all
}

fn merged(entries: &[&Entry<'_>]) -> Document {
    let mut doc = Document::default();
    let owned: Vec<Entry<'_>> = entries.iter().map(|&e| e.clone()).collect();
    doc.merge_all(&owned);
    doc
}

/// Every ordering of `0..n`, by Heap's algorithm (n ≤ MAX_PERMUTED).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, order: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(order.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, order, out);
            let j = if k % 2 == 0 { i } else { 0 };
            if i + 1 < k {
                order.swap(j, k - 1);
            }
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

#[test]
fn permutations_are_all_distinct_orderings() {
    for n in 0..=MAX_PERMUTED {
        let mut all = permutations(n);
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
        assert_eq!(count, (1..=n).product::<usize>());
    }
}

#[test]
fn merge_cases_reach_the_expected_state_in_every_order() {
    let doc = load("merge.json");
    let limits = Limits::default();
    let mut orders_checked = 0;
    for case in list(&doc, "cases") {
        let texts: Vec<String> = list(case, "entries")
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        let entries: Vec<Entry<'_>> = texts
            .iter()
            .map(|t| Entry::from_json(t, &limits).unwrap_or_else(|e| panic!("{}: {e}", name(case))))
            .collect();
        let expected = expected_state(case);
        let n = entries.len();
        let mut orders: Vec<Vec<usize>> = vec![(0..n).collect(), (0..n).rev().collect()];
        if n <= MAX_PERMUTED {
            orders.extend(permutations(n));
        }
        for order in &orders {
            let in_order: Vec<&Entry<'_>> = order.iter().map(|&i| &entries[i]).collect();
            let doc = merged(&in_order);
            assert_eq!(state(&doc), expected, "{}: order {order:?}", name(case));
            assert_eq!(doc.live_count() + doc.tombstone_count(), expected.len());
            orders_checked += 1;
        }
        // Merging everything a second time changes nothing.
        let all: Vec<&Entry<'_>> = entries.iter().collect();
        let mut doc = merged(&all);
        let head = doc.seq();
        let again = doc.merge_all(&entries);
        assert_eq!((again.applied, again.seq), (0, head), "{}", name(case));
        assert_eq!(state(&doc), expected, "{} twice", name(case));
    }
    assert!(orders_checked > 100, "permutations were exercised");
}

// ------------------------------------------------------------------------ entries

#[test]
fn entries_valid_parse_to_their_canonical_value() {
    let doc = load("entries.json");
    let limits = Limits::default();
    for case in list(&doc, "valid") {
        let entry_text = expanded(case, "entry");
        let entry = Entry::from_json(&entry_text, &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", name(case)));
        let expected = match &case["value_canonical"] {
            Value::Null => None,
            Value::String(_) => Some(expanded(case, "value_canonical")),
            other => panic!("{}: value_canonical is {other}", name(case)),
        };
        assert_eq!(
            entry.value.as_deref(),
            expected.as_deref(),
            "{}",
            name(case)
        );
        // The key is the decoded string of the entry's "key" field.
        let parsed: Map<String, Value> = serde_json::from_str(&entry_text).unwrap();
        assert_eq!(Some(&*entry.key), parsed["key"].as_str(), "{}", name(case));
        assert_eq!(entry.ts.to_string(), parsed["ts"].as_str().unwrap());
    }
}

#[test]
fn entries_invalid_are_rejected_with_their_code() {
    let doc = load("entries.json");
    let limits = Limits::default();
    for case in list(&doc, "invalid") {
        let entry_text = expanded(case, "entry");
        let err = Entry::from_json(&entry_text, &limits).expect_err(name(case));
        assert_eq!(err.code, code_of(case), "{}: {}", name(case), err.message);
    }
}

// ------------------------------------------------------------------------ frames

fn skew_of(case: &Value) -> Option<SkewCheck> {
    case.get("now_ms").map(|now| SkewCheck {
        now_ms: now.as_u64().expect("now_ms is an integer"),
        max_skew_ms: MAX_SKEW_MS,
    })
}

fn optional_int(case: &Value, field: &str) -> Option<u64> {
    match &case[field] {
        Value::Null => None,
        v => Some(v.as_u64().unwrap_or_else(|| panic!("{field} is {v}"))),
    }
}

#[test]
fn frames_valid_apply_on_an_empty_document() {
    let doc = load("frames.json");
    for case in list(&doc, "valid") {
        let frame = expanded(case, "frame");
        let mut target = Document::default();
        let outcome = target
            .apply_frame(&frame, skew_of(case))
            .unwrap_or_else(|e| panic!("{}: {e}", name(case)));
        let applied = case["applied"].as_u64().unwrap() as usize;
        let ignored = case["ignored"].as_u64().unwrap() as usize;
        assert_eq!(
            (outcome.id, outcome.applied, outcome.ignored),
            (case["id"].as_u64().unwrap(), applied, ignored),
            "{}",
            name(case)
        );
        // On an empty document every applied entry took the next seq from 0.
        assert_eq!(outcome.seq, applied as u64, "{}", name(case));
        assert_eq!(target.seq(), applied as u64, "{}", name(case));
    }
}

#[test]
fn frames_invalid_are_rejected_whole_with_code_id_and_entry() {
    let doc = load("frames.json");
    for case in list(&doc, "invalid") {
        let frame = expanded(case, "frame");
        let mut target = Document::default();
        let err = target
            .apply_frame(&frame, skew_of(case))
            .expect_err(name(case));
        assert_eq!(err.code, code_of(case), "{}: {}", name(case), err.message);
        assert_eq!(err.id, optional_int(case, "id"), "{}: id", name(case));
        assert_eq!(
            err.entry.map(|e| e as u64),
            optional_int(case, "entry"),
            "{}: entry",
            name(case)
        );
        assert_eq!(target.seq(), 0, "{}: applied nothing", name(case));
        assert_eq!(
            target.entries().count(),
            0,
            "{}: stored nothing",
            name(case)
        );
    }
}

#[test]
fn every_vector_file_has_cases() {
    for (file, fields) in [
        ("timestamps.json", &["ordered", "valid", "invalid"][..]),
        ("canonical.json", &["cases", "invalid"][..]),
        ("merge.json", &["cases"][..]),
        ("entries.json", &["valid", "invalid"][..]),
        ("frames.json", &["valid", "invalid"][..]),
    ] {
        let doc = load(file);
        for field in fields {
            assert!(!list(&doc, field).is_empty(), "{file}: {field} is empty");
        }
    }
}
