//! Inputs found while fuzzing the core (`rust_crdt/fuzz`, `make fuzz`), each replayed
//! exactly: every one once made the core panic.

use syncd_crdt::{Document, ErrorCode, MAX_SEQ};

/// A log line whose seq is the greatest u64: computing the seqs of its entries
/// (`seq + 1 - entries`) overflowed, a panic in a build with overflow checks (the
/// `persist` target). A seq above MAX_SEQ is now refused like any malformed line.
#[test]
fn a_log_line_with_a_seq_of_u64_max_is_refused_not_a_panic() {
    let entry = r#"{"key":"a","ts":"1764028800123-00000-x","value":1}"#;
    for line in [
        "{\"seq\":18446744073709551615,\"ops\":[]}\n".to_owned(),
        format!("{{\"seq\":18446744073709551615,\"ops\":[{entry}]}}\n"),
        format!("{{\"seq\":{},\"ops\":[{entry}]}}\n", MAX_SEQ + 1),
    ] {
        let mut doc = Document::default();
        let error = doc.restore_log_json(&line, 0).unwrap_err();
        assert_eq!(error.code, ErrorCode::BadMessage);
        assert!(
            error.message.starts_with("log line 1: seq "),
            "{}",
            error.message
        );
        assert_eq!((doc.seq(), doc.entries().count()), (0, 0));
    }
    let mut doc = Document::default();
    let line = format!("{{\"seq\":{MAX_SEQ},\"ops\":[{entry}]}}\n");
    assert_eq!(doc.restore_log_json(&line, 0).unwrap(), 1);
    assert_eq!(doc.seq(), MAX_SEQ);
}
