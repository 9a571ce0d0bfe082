//! Arbitrary bytes as a client frame, through `frame_type` and `Document::apply_frame`
//! (with and without the server's clock check).
//!
//! Every text gets a result or a contract error, never a panic; a rejected frame applies
//! nothing; `frame_type` and `apply_frame` agree on what is not JSON; the clock check only
//! ever adds rejections; and the applied entries, sent again as a frame to a copy of the
//! document as it was, apply the same way and leave the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use syncd_crdt::frame::frame_type;
use syncd_crdt::{Document, ErrorCode, FrameOutcome, SkewCheck};
use syncd_crdt_fuzz::{copy_of, seeded, state, NOW_MS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let kind = frame_type(&text);
    let skew = SkewCheck {
        now_ms: NOW_MS,
        max_skew_ms: 60_000,
    };
    let plain = apply(&text, None, &kind);
    let checked = apply(&text, Some(skew), &kind);
    if let Some(checked) = checked {
        assert_eq!(
            plain,
            Some(checked),
            "the clock check accepted what plain apply refused"
        );
    }
});

/// Applies `text` to a seeded document and checks the outcome; `None` if it was rejected.
fn apply(
    text: &str,
    skew: Option<SkewCheck>,
    kind: &syncd_crdt::error::Result<String>,
) -> Option<FrameOutcome> {
    let mut doc = seeded();
    let before = copy_of(&doc);
    match doc.apply_frame(text, skew) {
        Err(error) => {
            assert_eq!(
                state(&doc),
                state(&before),
                "a rejected frame applied something"
            );
            assert_eq!(doc.seq(), before.seq());
            assert!(!error.message.is_empty());
            match kind {
                Err(not_typed) => assert_eq!(error.code, not_typed.code, "{text:?}"),
                Ok(kind) if kind != "ops" => assert_eq!(error.code, ErrorCode::BadMessage),
                Ok(_) => {}
            }
            None
        }
        Ok(outcome) => {
            assert_eq!(kind.as_deref().ok(), Some("ops"));
            check_outcome(&doc, before, &outcome);
            Some(outcome)
        }
    }
}

fn check_outcome(doc: &Document, before: Document, outcome: &FrameOutcome) {
    assert_eq!(outcome.seq, before.seq() + outcome.applied as u64);
    assert_eq!(doc.seq(), outcome.seq);
    let ack: Value = serde_json::from_str(&outcome.ack_json()).expect("the ack is JSON");
    assert_eq!(ack["applied"], outcome.applied);
    match outcome.broadcast_json("fuzz") {
        None => assert_eq!(outcome.applied, 0),
        Some(broadcast) => {
            let broadcast: Value = serde_json::from_str(&broadcast).expect("the broadcast is JSON");
            assert_eq!(
                broadcast["ops"].as_array().map(Vec::len),
                Some(outcome.applied)
            );
            let replay = format!(
                r#"{{"type":"ops","id":{},"ops":[{}]}}"#,
                outcome.id, outcome.ops_json
            );
            let mut again = before;
            let second = again
                .apply_frame(&replay, None)
                .expect("the applied entries make a valid frame");
            assert_eq!((second.applied, second.ignored), (outcome.applied, 0));
            assert_eq!(second.ops_json, outcome.ops_json);
            assert_eq!(state(&again), state(doc));
        }
    }
    let copy = copy_of(doc);
    assert_eq!(state(&copy), state(doc));
    assert_eq!(copy.table_json(), doc.table_json());
}
