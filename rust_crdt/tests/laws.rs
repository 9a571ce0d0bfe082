//! The CRDT laws as properties (proptest): merge is commutative, associative and
//! idempotent and agrees with a reference model of contract §1, and the clock issues
//! strictly increasing timestamps. Entries come from a small space of keys, walls,
//! counters and nodes so that equal timestamps, and so both tie rules, happen often.

mod common;

use common::state;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use syncd_crdt::canonical::canonicalize;
use syncd_crdt::timestamp::{MAX_COUNTER, MAX_WALL};
use syncd_crdt::{Clock, Document, Entry, Limits, Timestamp};

const BASE: u64 = 1_764_028_800_000;
const CASES: u32 = 1000;

/// Values of every JSON type, some equal once canonical (`1` and `1.0`), some whose
/// canonical texts sort differently from their meaning (`10` < `9`).
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "1.0",
    "9",
    "10",
    "-0.5",
    r#""1""#,
    r#""a""#,
    r#""é""#,
    r#""😀""#,
    r#""\uffff""#,
    "[]",
    r#"[1,"x"]"#,
    "{}",
    r#"{"b":1,"a":[null]}"#,
    r#"{"a":[null],"b":1}"#,
];

/// A live entry, or a tombstone (`None`) about one time in four.
fn value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        3 => prop::sample::select(VALUES).prop_map(|v| Some(canonicalize(v).unwrap().into_owned())),
    ]
}

fn entry() -> impl Strategy<Value = Entry<'static>> {
    (
        prop::sample::select(&["a", "b", "c"][..]),
        0..3u64,
        0..2u32,
        prop::sample::select(&["A", "_", "a"][..]),
        value(),
    )
        .prop_map(|(key, wall, counter, node, value)| {
            let ts = Timestamp::new(BASE + wall, counter, node).unwrap();
            Entry::new(key, ts, value.map(Into::into), &Limits::default()).unwrap()
        })
}

fn entries() -> impl Strategy<Value = Vec<Entry<'static>>> {
    prop::collection::vec(entry(), 0..12)
}

fn doc_of(entries: &[Entry<'_>]) -> Document {
    let mut doc = Document::default();
    doc.merge_all(entries);
    doc
}

/// Contract §1 stated directly: per key, the greatest entry by (ts, live over tombstone,
/// canonical value as UTF-8 bytes).
fn model(entries: &[Entry<'_>]) -> Vec<(String, String, Option<String>)> {
    let rank = |e: &Entry<'_>| (e.ts, e.value.as_ref().map(|v| v.as_bytes().to_vec()));
    let mut best: BTreeMap<String, &Entry<'_>> = BTreeMap::new();
    for e in entries {
        let slot = best.entry(e.key.to_string()).or_insert(e);
        if rank(e) > rank(slot) {
            *slot = e;
        }
    }
    best.into_values()
        .map(|e| {
            (
                e.key.to_string(),
                e.ts.to_string(),
                e.value.as_deref().map(str::to_owned),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Replicas converge whichever merges into which, and entries commute within a batch.
    #[test]
    fn prop_merge_commutative(
        (xs, shuffled) in entries().prop_flat_map(|xs| (Just(xs.clone()), Just(xs).prop_shuffle())),
        ys in entries(),
    ) {
        let mut xy = doc_of(&xs);
        xy.merge_document(&doc_of(&ys));
        let mut yx = doc_of(&ys);
        yx.merge_document(&doc_of(&xs));
        prop_assert_eq!(state(&xy), state(&yx));
        prop_assert_eq!(state(&doc_of(&xs)), state(&doc_of(&shuffled)));
    }

    /// (x ⊔ y) ⊔ z = x ⊔ (y ⊔ z).
    #[test]
    fn prop_merge_associative(xs in entries(), ys in entries(), zs in entries()) {
        let mut left = doc_of(&xs);
        left.merge_document(&doc_of(&ys));
        left.merge_document(&doc_of(&zs));
        let mut yz = doc_of(&ys);
        yz.merge_document(&doc_of(&zs));
        let mut right = doc_of(&xs);
        right.merge_document(&yz);
        prop_assert_eq!(state(&left), state(&right));
    }

    /// x ⊔ x = x: merging what a replica already holds applies nothing, and so does any
    /// entry delivered twice.
    #[test]
    fn prop_merge_idempotent(xs in entries()) {
        let mut doc = doc_of(&xs);
        let before = state(&doc);
        let head = doc.seq();
        let again = doc.merge_document(&doc_of(&xs));
        prop_assert_eq!(again.applied, 0);
        prop_assert_eq!(doc.seq(), head);
        prop_assert_eq!(state(&doc), before.clone());
        let twice: Vec<Entry<'_>> = xs.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        prop_assert_eq!(state(&doc_of(&twice)), before);
    }

    /// Whatever the order, the state is the one contract §1 defines.
    #[test]
    fn prop_merge_matches_the_contract_model(xs in entries()) {
        let doc = doc_of(&xs);
        prop_assert_eq!(state(&doc), model(&xs));
        prop_assert_eq!(doc.live_count() + doc.tombstone_count(), model(&xs).len());
    }
}

/// One step of a clock's life.
#[derive(Debug, Clone)]
enum ClockOp {
    /// A local write when the physical clock reads `BASE + offset` (may go backwards).
    Tick(i64),
    /// A received timestamp.
    Observe(i64, u32, &'static str),
}

fn clock_op() -> impl Strategy<Value = ClockOp> {
    let counter = prop_oneof![0..3u32, (MAX_COUNTER - 2)..=MAX_COUNTER];
    prop_oneof![
        3 => (-5..6i64).prop_map(ClockOp::Tick),
        1 => (-5..6i64, counter, prop::sample::select(&["-", "a", "m", "zz"][..]))
            .prop_map(|(w, c, n)| ClockOp::Observe(w, c, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Every issued ts is strictly greater than every ts issued or observed before, never
    /// behind the physical clock, and at most one millisecond past what came before.
    #[test]
    fn prop_clock_strictly_monotonic(ops in prop::collection::vec(clock_op(), 1..60)) {
        let mut clock = Clock::new("m").unwrap();
        let mut greatest: Option<Timestamp> = None;
        for op in ops {
            match op {
                ClockOp::Tick(offset) => {
                    let physical = BASE.checked_add_signed(offset).unwrap();
                    let (last_wall, _) = clock.last();
                    let issued = clock.tick(physical).unwrap();
                    if let Some(before) = &greatest {
                        prop_assert!(&issued > before, "{} after {}", issued, before);
                    }
                    prop_assert_eq!(issued.node(), "m");
                    prop_assert!(issued.wall() >= physical);
                    prop_assert!(issued.wall() <= physical.max(last_wall + 1));
                    prop_assert_eq!(clock.last(), (issued.wall(), issued.counter()));
                    greatest = Some(issued);
                }
                ClockOp::Observe(offset, counter, node) => {
                    let wall = BASE.checked_add_signed(offset).unwrap();
                    let remote = Timestamp::new(wall, counter, node).unwrap();
                    clock.observe(&remote);
                    if greatest.as_ref().is_none_or(|g| &remote > g) {
                        greatest = Some(remote);
                    }
                }
            }
            let g = greatest.as_ref().unwrap();
            prop_assert!(clock.last() >= (g.wall(), g.counter()));
        }
    }
}

#[test]
fn the_clock_refuses_to_pass_the_end_of_time() {
    let mut clock = Clock::new("m").unwrap();
    clock.observe(&Timestamp::new(MAX_WALL, MAX_COUNTER - 1, "a").unwrap());
    let last = clock.tick(0).unwrap();
    assert_eq!(last.to_string(), format!("{MAX_WALL}-{MAX_COUNTER}-m"));
    assert!(clock.tick(u64::MAX).is_err());
    assert_eq!(
        clock.last(),
        (MAX_WALL, MAX_COUNTER),
        "a refused tick changes nothing"
    );
}

/// The laws above only mean something if the generated entries collide: check that the
/// strategy produces both kinds of tie (live against tombstone, and two different live
/// values) at an equal timestamp for one key, in a good share of its cases.
#[test]
fn the_entry_strategy_exercises_both_tie_rules() {
    let mut runner = TestRunner::deterministic();
    let strategy = entries();
    let (mut live_vs_tombstone, mut live_vs_live) = (0, 0);
    for _ in 0..CASES {
        let xs = strategy.new_tree(&mut runner).unwrap().current();
        let mut by_slot: BTreeMap<(String, Timestamp), Vec<Option<String>>> = BTreeMap::new();
        for e in &xs {
            by_slot
                .entry((e.key.to_string(), e.ts))
                .or_default()
                .push(e.value.as_deref().map(str::to_owned));
        }
        let has = |test: &dyn Fn(&Vec<Option<String>>) -> bool| by_slot.values().any(test);
        if has(&|vs| vs.iter().any(Option::is_none) && vs.iter().any(Option::is_some)) {
            live_vs_tombstone += 1;
        }
        if has(&|vs| {
            let mut live: Vec<_> = vs.iter().flatten().collect();
            live.sort();
            live.dedup();
            live.len() > 1
        }) {
            live_vs_live += 1;
        }
    }
    assert!(
        live_vs_tombstone > CASES / 10,
        "{live_vs_tombstone} of {CASES}"
    );
    assert!(live_vs_live > CASES / 10, "{live_vs_live} of {CASES}");
}
