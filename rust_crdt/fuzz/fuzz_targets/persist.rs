//! Arbitrary bytes as a stored document: `restore_file_json` (the reader of files in
//! pieces), `restore_log_json`, `restore_table_json` and `restore_log` (a log read a
//! line at a time) never panic; a rejected input restores nothing; a restored
//! document writes a table that restores to the same document, and restoring the same
//! input twice changes nothing.
//!
//! The first byte picks the reader (its low two bits) and, for a log, the seq that the
//! file it follows ends at (the rest); the others are the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncd_crdt::{Document, MAX_SEQ};
use syncd_crdt_fuzz::{copy_of, state};

fn restore(doc: &mut Document, reader: u8, after: u64, text: &str) -> bool {
    match reader {
        0 => doc
            .restore_file_json(text)
            .is_ok_and(|meta| serde_json::from_str::<&serde_json::value::RawValue>(&meta).is_ok()),
        1 => doc.restore_log_json(text, after).is_ok(),
        2 => doc.restore_table_json(text).is_ok(),
        _ => doc.restore_log(text.as_bytes(), after).is_ok(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (reader, after) = (first & 3, u64::from(first >> 2));
    let text = String::from_utf8_lossy(rest);
    let mut doc = Document::default();
    if !restore(&mut doc, reader, after, &text) {
        assert_eq!(doc.seq(), 0, "a rejected input moved the head");
        assert!(state(&doc).is_empty(), "a rejected input restored entries");
        return;
    }
    assert!(doc.seq() <= MAX_SEQ);
    let loaded = state(&doc);
    assert!(loaded
        .iter()
        .all(|(_, _, _, seq)| (1..=doc.seq()).contains(seq)));
    assert_eq!(state(&copy_of(&doc)), loaded);
    assert!(
        restore(&mut doc, reader, after, &text),
        "the same input failed the second time"
    );
    assert_eq!(state(&doc), loaded, "restoring twice changed the document");
});
