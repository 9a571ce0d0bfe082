//! The on-disk forms of a document, written and read by the core so that saving and
//! loading a million entries is one call each.
//!
//! * The **file**: a TinyDB database with two tables, `meta` (the document's position, as
//!   the caller gives it) and `entries`, one record per entry keyed by the entry's seq
//!   (`{"17": {"key": …, "ts": …, "value": …}, …}`), so a user can open the file with
//!   plain TinyDB and read every entry with its seq as `doc_id`.
//! * The **log**: one line per applied message, `{"seq": N, "ops": [entry, …]}`, where
//!   the entries took the seqs up to and including `N`, in order.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::document::{Document, MAX_SEQ};
use crate::entry::{is_json_object, Entry, Limits};
use crate::error::{CrdtError, Result};

/// Stored entries were checked when they were written; a lowered value limit must not
/// make a document unloadable, so loading only enforces the fixed key limit.
const LOAD_LIMITS: Limits = Limits {
    max_value_bytes: usize::MAX,
    max_ops: usize::MAX,
};

impl Document {
    /// Every entry as a TinyDB table's JSON object, keyed by seq, in seq order.
    pub fn table_json(&self) -> String {
        let mut out = Vec::with_capacity(64 * self.live_count() + 2);
        out.push(b'{');
        for (i, entry) in self.changes_since(0).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(entry.seq.to_string().as_bytes());
            out.extend_from_slice(b"\":");
            entry.write_json(&mut out);
        }
        out.push(b'}');
        String::from_utf8(out).expect("entries are written from UTF-8 strings")
    }

    /// Restores the entries of a TinyDB file `{"meta": …, "entries": <table>}` whose
    /// entries table was written by [`Document::table_json`]; returns the text of its
    /// `meta` table (`{}` if it has none).
    pub fn restore_file_json(&mut self, text: &str) -> Result<String> {
        if !is_json_object(text) {
            return Err(CrdtError::bad_message(
                "not a syncd TinyDB file: not a JSON object",
            ));
        }
        let file: File<'_> = serde_json::from_str(text)
            .map_err(|e| CrdtError::bad_message(format!("not a syncd TinyDB file: {e}")))?;
        if let Some(entries) = file.entries {
            self.restore_table(entries)?;
        }
        Ok(file
            .meta
            .map_or_else(|| "{}".to_owned(), |m| m.get().to_owned()))
    }

    /// Restores the entries of a table written by [`Document::table_json`]; returns how
    /// many records it held.
    pub fn restore_table_json(&mut self, text: &str) -> Result<usize> {
        let table: Table<'_> = serde_json::from_str(text)
            .map_err(|e| CrdtError::bad_message(format!("table: {e}")))?;
        self.restore_table(table)
    }

    fn restore_table(&mut self, table: Table<'_>) -> Result<usize> {
        let mut batch = Vec::with_capacity(table.0.len());
        for (id, raw) in table.0 {
            let seq = id.parse::<u64>().map_err(|_| {
                CrdtError::bad_message(format!("table: record id {id:?} is not a seq"))
            })?;
            let entry = Entry::from_json(raw.get(), &LOAD_LIMITS)
                .map_err(|e| CrdtError::bad_message(format!("table record {id}: {e}")))?;
            batch.push((entry, seq));
        }
        let count = batch.len();
        self.restore_all(batch)?;
        Ok(count)
    }

    /// Replays log lines (each ending in a newline), skipping entries with a seq at or
    /// below `after` (already in the file the log follows) and what the document already
    /// holds; returns how many entries were replayed. A malformed line is an error that
    /// names its number (counted from 1).
    pub fn restore_log_json(&mut self, text: &str, after: u64) -> Result<usize> {
        let mut batch = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad =
                |why: String| CrdtError::bad_message(format!("log line {}: {why}", number + 1));
            let record: LogLine<'_> = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            // No seq is above MAX_SEQ; checked first so that `seq + 1` cannot overflow.
            if record.seq > MAX_SEQ {
                return Err(bad(format!("seq {} is above {MAX_SEQ}", record.seq)));
            }
            let first = (record.seq + 1)
                .checked_sub(record.ops.len() as u64)
                .ok_or_else(|| bad("more entries than seqs".into()))?;
            for (i, raw) in record.ops.iter().enumerate() {
                let seq = first + i as u64;
                if seq <= after {
                    continue;
                }
                let entry =
                    Entry::from_json(raw.get(), &LOAD_LIMITS).map_err(|e| bad(e.message))?;
                batch.push((entry, seq));
            }
        }
        let count = batch.len();
        self.restore_all(batch)?;
        Ok(count)
    }
}

/// Writes one log line for a message whose applied entries (`ops_json`, comma-separated)
/// took the seqs up to and including `seq`.
pub fn log_line(seq: u64, ops_json: &str) -> String {
    format!("{{\"seq\":{seq},\"ops\":[{ops_json}]}}\n")
}

#[derive(Deserialize)]
struct File<'a> {
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entries: Option<Table<'a>>,
}

#[derive(Deserialize)]
struct LogLine<'a> {
    seq: u64,
    #[serde(borrow)]
    ops: Vec<&'a RawValue>,
}

/// A table's records in file order, without building a map of them first.
struct Table<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Table<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Records<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Records<'a> {
            type Value = Table<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of records keyed by seq")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Table<'a>, A::Error> {
                let mut records = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(record) = map.next_entry()? {
                    records.push(record);
                }
                Ok(Table(records))
            }
        }
        deserializer.deserialize_map(Records(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn entry(key: &str, ts: &str, value: Option<&'static str>) -> Entry<'static> {
        Entry::new(
            key.to_owned(),
            Timestamp::parse(ts).unwrap(),
            value.map(Into::into),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn table_round_trips_with_seqs_and_tombstones() {
        let mut doc = Document::default();
        doc.merge(&entry("a", "1764028800123-00000-x", Some("1")));
        doc.merge(&entry("b", "1764028800124-00000-x", Some("\"two\"")));
        doc.merge(&entry("a", "1764028800125-00000-x", None));
        let text = doc.table_json();
        assert_eq!(
            text,
            concat!(
                r#"{"2":{"key":"b","ts":"1764028800124-00000-x","value":"two"},"#,
                r#""3":{"key":"a","ts":"1764028800125-00000-x","deleted":true}}"#
            )
        );
        let mut copy = Document::default();
        assert_eq!(copy.restore_table_json(&text).unwrap(), 2);
        assert_eq!(copy.table_json(), text);
        assert_eq!(copy.seq(), 3);
    }

    #[test]
    fn log_replay_assigns_the_logged_seqs() {
        let text = concat!(
            "{\"seq\":2,\"ops\":[{\"key\":\"a\",\"ts\":\"1764028800123-00000-x\",\"value\":1},",
            "{\"key\":\"b\",\"ts\":\"1764028800123-00001-x\",\"value\":2}]}\n",
            "{\"seq\":5,\"ops\":[{\"key\":\"a\",\"ts\":\"1764028800124-00000-x\",\"deleted\":true}]}\n"
        );
        let mut doc = Document::default();
        assert_eq!(doc.restore_log_json(text, 0).unwrap(), 3);
        assert_eq!(doc.seq(), 5);
        assert_eq!(doc.get("a").unwrap().seq, 5);
        assert_eq!(doc.get("b").unwrap().seq, 2);
        assert_eq!(doc.lookup("a"), None);
        let mut after = Document::default();
        assert_eq!(after.restore_log_json(text, 2).unwrap(), 1);
        assert_eq!(after.get("b"), None);
    }

    #[test]
    fn file_round_trips_with_its_meta() {
        let mut doc = Document::default();
        doc.merge(&entry("a", "1764028800123-00000-x", Some("[1,2]")));
        let text = format!(
            r#"{{"meta":{{"1":{{"epoch":"e-1","seq":1}}}},"entries":{}}}"#,
            doc.table_json()
        );
        let mut copy = Document::default();
        assert_eq!(
            copy.restore_file_json(&text).unwrap(),
            r#"{"1":{"epoch":"e-1","seq":1}}"#
        );
        assert_eq!(copy.lookup("a"), Some("[1,2]"));
        assert!(copy.restore_file_json("{\"entries\":[]}").is_err());
        assert!(copy.restore_file_json("[1]").is_err());
    }

    #[test]
    fn malformed_lines_and_records_are_errors_naming_them() {
        let mut doc = Document::default();
        let err = doc
            .restore_log_json("{\"seq\":1,\"ops\":[]}\nnot json\n", 0)
            .unwrap_err();
        assert!(err.message.starts_with("log line 2:"), "{}", err.message);
        let err = doc
            .restore_table_json(r#"{"x":{"key":"a","ts":"1764028800123-00000-x","value":1}}"#)
            .unwrap_err();
        assert!(err.message.contains("\"x\""), "{}", err.message);
        assert!(doc.restore_table_json("[").is_err());
    }
}
