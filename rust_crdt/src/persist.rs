//! The on-disk forms of a document, written and read by the core so that saving and
//! loading a million entries is one call each.
//!
//! * The **file**: a TinyDB database with two tables, `meta` (the document's position, as
//!   the caller gives it) and `entries`, one record per entry keyed by the entry's seq
//!   (`{"17": {"key": …, "ts": …, "value": …}, …}`), so a user can open the file with
//!   plain TinyDB and read every entry with its seq as `doc_id`.
//! * The **log**: one line per applied message, `{"seq": N, "ops": [entry, …]}`, where
//!   the entries took the seqs up to and including `N`, in order.
//!
//! Both are read from a stream in pieces ([`Document::restore_file`],
//! [`Document::restore_log`]), each record restored as it is read: loading a million
//! entries holds the document and a buffer of a few hundred KiB, never the file's text.

use std::io::{BufRead, Read, Write};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::document::{Document, EntryView, Restoring, MAX_SEQ};
use crate::entry::{Entry, Limits, WireEntry};
use crate::error::{CrdtError, Result};
use crate::pieces::{Borrowing, Pieces, Raw};
pub use crate::pieces::{LoadError, READ_CHUNK};

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
            write_record(&mut out, &entry);
        }
        out.push(b'}');
        String::from_utf8(out).expect("entries are written from UTF-8 strings")
    }

    /// Restores the entries of a TinyDB file `{"meta": …, "entries": <table>}` whose
    /// entries table was written by [`Document::table_json`]; returns the text of its
    /// `meta` table (`{}` if it has none). See [`Document::restore_file`].
    pub fn restore_file_json(&mut self, text: &str) -> Result<String> {
        self.restore_file(text.as_bytes())
            .map_err(LoadError::into_crdt)
    }

    /// Restores the entries of a TinyDB file read from `reader` (as
    /// [`Document::restore_file_json`]) through a buffer of a few hundred KiB: each record
    /// is restored as it is read, so neither the file nor its table is ever held. After an
    /// error a new document is left new, any other holds the records read before it.
    pub fn restore_file(&mut self, reader: impl Read) -> Result<String, LoadError> {
        self.all_or_nothing(|document| {
            let mut records = Records::new(document);
            let mut pieces = Pieces::new(reader);
            let mut meta = None;
            pieces
                .object(
                    "a JSON object with the tables \"meta\" and \"entries\"",
                    |pieces, name| match name {
                        "meta" => {
                            meta = Some(pieces.value::<Raw, _>(|raw| Ok(raw.get().to_owned()))?);
                            Ok(())
                        }
                        "entries" => records.read_table(pieces),
                        _ => pieces.value::<Raw, _>(|_| Ok(())),
                    },
                )
                .and_then(|()| pieces.end())
                .map_err(|e| e.within("not a syncd TinyDB file"))?;
            Ok(meta.unwrap_or_else(|| "{}".to_owned()))
        })
    }

    /// Restores the entries of a table written by [`Document::table_json`]; returns how
    /// many records it held.
    pub fn restore_table_json(&mut self, text: &str) -> Result<usize> {
        self.all_or_nothing(|document| {
            let mut records = Records::new(document);
            let mut pieces = Pieces::new(text.as_bytes());
            records
                .read_table(&mut pieces)
                .and_then(|()| pieces.end())
                .map_err(|e| e.within("table").into_crdt())?;
            Ok(records.count)
        })
    }

    /// Replays log lines (each ending in a newline), skipping entries with a seq at or
    /// below `after` (already in the file the log follows) and what the document already
    /// holds; returns how many entries were replayed. A malformed line is an error that
    /// names its number (counted from 1); it leaves a new document new, and any other
    /// with the lines before it replayed.
    pub fn restore_log_json(&mut self, text: &str, after: u64) -> Result<usize> {
        self.all_or_nothing(|document| {
            let mut restoring = document.restoring();
            let mut count = 0;
            for (index, line) in text.lines().enumerate() {
                count += replay_line(&mut restoring, index + 1, line, after)?;
            }
            Ok(count)
        })
    }

    /// Replays the complete lines of a log segment read from `reader` (as
    /// [`Document::restore_log_json`]), one line in memory at a time. An unfinished last
    /// line, torn by a crash while it was appended, is skipped: its length is
    /// [`LogReplay::torn`].
    pub fn restore_log(
        &mut self,
        mut reader: impl BufRead,
        after: u64,
    ) -> Result<LogReplay, LoadError> {
        self.all_or_nothing(|document| {
            let mut restoring = document.restoring();
            let mut replay = LogReplay::default();
            let mut line = Vec::new();
            for number in 1.. {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    replay.torn = line.len();
                    break;
                }
                let text = std::str::from_utf8(&line).map_err(|e| {
                    CrdtError::bad_message(format!("log line {number}: not UTF-8 text: {e}"))
                })?;
                replay.entries += replay_line(&mut restoring, number, text, after)?;
            }
            Ok(replay)
        })
    }

    /// Writes the document as a TinyDB file, `{"meta": {"1": …}, "entries": <table>}`,
    /// in pieces: the whole text is never held. Record 1 of `meta` is `fields` with the
    /// document's `seq` and `horizon` first. Returns the bytes written.
    pub fn write_file_json(
        &self,
        out: &mut impl Write,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> std::io::Result<u64> {
        let mut meta = serde_json::Map::new();
        meta.insert("seq".into(), self.seq().into());
        meta.insert("horizon".into(), self.horizon().into());
        meta.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut chunk = Vec::with_capacity(WRITE_CHUNK + 4096);
        chunk.extend_from_slice(b"{\"meta\":{\"1\":");
        serde_json::to_writer(&mut chunk, &meta)?;
        chunk.extend_from_slice(b"},\"entries\":{");
        let mut bytes = 0;
        for (i, entry) in self.changes_since(0).enumerate() {
            if i > 0 {
                chunk.push(b',');
            }
            write_record(&mut chunk, &entry);
            if chunk.len() >= WRITE_CHUNK {
                out.write_all(&chunk)?;
                bytes += chunk.len() as u64;
                chunk.clear();
            }
        }
        chunk.extend_from_slice(b"}}");
        out.write_all(&chunk)?;
        out.flush()?;
        Ok(bytes + chunk.len() as u64)
    }
}

/// Writes one log line for a message whose applied entries (`ops_json`, comma-separated)
/// took the seqs up to and including `seq`.
pub fn log_line(seq: u64, ops_json: &str) -> String {
    format!("{{\"seq\":{seq},\"ops\":[{ops_json}]}}\n")
}

/// Bytes handed to the writer at a time by [`Document::write_file_json`].
const WRITE_CHUNK: usize = 256 << 10;

/// One record of a table: `"SEQ":ENTRY`.
fn write_record(out: &mut Vec<u8>, entry: &EntryView<'_>) {
    out.push(b'"');
    out.extend_from_slice(entry.seq.to_string().as_bytes());
    out.extend_from_slice(b"\":");
    entry.write_json(out);
}

/// What replaying a log segment did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogReplay {
    /// How many entries were replayed.
    pub entries: usize,
    /// The bytes of an unfinished last line that was skipped (0 if the last line ended).
    pub torn: usize,
}

#[derive(Deserialize)]
struct LogLine<'a> {
    seq: u64,
    #[serde(borrow)]
    ops: Vec<&'a RawValue>,
}

/// Replays the log line `number` (counted from 1); returns how many entries it replayed.
fn replay_line(
    restoring: &mut Restoring<'_>,
    number: usize,
    line: &str,
    after: u64,
) -> Result<usize> {
    if line.trim().is_empty() {
        return Ok(0);
    }
    let bad = |why: String| CrdtError::bad_message(format!("log line {number}: {why}"));
    let record: LogLine<'_> = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    // No seq is above MAX_SEQ; checked first so that `seq + 1` cannot overflow.
    if record.seq > MAX_SEQ {
        return Err(bad(format!("seq {} is above {MAX_SEQ}", record.seq)));
    }
    let first = (record.seq + 1)
        .checked_sub(record.ops.len() as u64)
        .ok_or_else(|| bad("more entries than seqs".into()))?;
    let mut count = 0;
    for (i, raw) in record.ops.iter().enumerate() {
        let seq = first + i as u64;
        if seq <= after {
            continue;
        }
        let entry = Entry::from_json(raw.get(), &LOAD_LIMITS).map_err(|e| bad(e.message))?;
        restoring.restore(&entry, seq).map_err(|e| bad(e.message))?;
        count += 1;
    }
    Ok(count)
}

/// Records of a table being restored into a document, one at a time.
struct Records<'d> {
    restoring: Restoring<'d>,
    count: usize,
}

impl<'d> Records<'d> {
    fn new(document: &'d mut Document) -> Self {
        Records {
            restoring: document.restoring(),
            count: 0,
        }
    }

    /// Reads a table `{"SEQ": ENTRY, …}`, restoring each record as it is read.
    fn read_table(&mut self, pieces: &mut Pieces<impl Read>) -> Result<(), LoadError> {
        pieces.object("a JSON object of records keyed by seq", |pieces, id| {
            pieces
                .value::<Record, _>(|entry| Ok(self.restore(id, entry)?))
                .map_err(|e| e.within(&format!("table record {id}")))
        })
    }

    fn restore(&mut self, id: &str, entry: WireEntry<'_>) -> Result<()> {
        let seq = id
            .parse::<u64>()
            .map_err(|_| CrdtError::bad_message(format!("record id {id:?} is not a seq")))?;
        self.restoring.restore(&entry.check(&LOAD_LIMITS)?, seq)?;
        self.count += 1;
        Ok(())
    }
}

/// A table's record, read straight from the buffer.
struct Record;

impl Borrowing for Record {
    type Of<'a> = WireEntry<'a>;
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
    fn a_rejected_file_or_log_leaves_a_new_document_new() {
        let file = concat!(
            r#"{"meta":{},"entries":{"1":{"key":"a","ts":"1764028800123-00000-x","value":1},"#,
            r#""2":{"key":"b","ts":"nope","value":2}}}"#
        );
        let log = concat!(
            "{\"seq\":1,\"ops\":[{\"key\":\"a\",\"ts\":\"1764028800123-00000-x\",\"value\":1}]}\n",
            "{\"seq\":2,\"ops\":[{\"key\":\"b\"}]}\n"
        );
        let mut doc = Document::default();
        assert!(doc.restore_file_json(file).is_err());
        assert!(doc.restore_log_json(log, 0).is_err());
        assert_eq!((doc.seq(), doc.entries().count()), (0, 0));
        // A document that already held entries keeps those read before the error.
        doc.merge(&entry("z", "1764028800100-00000-x", Some("0")));
        assert!(doc.restore_log_json(log, 0).is_err());
        assert_eq!(doc.lookup("a"), Some("1"));
    }

    #[test]
    fn a_log_read_in_pieces_skips_only_a_torn_last_line() {
        let line =
            "{\"seq\":1,\"ops\":[{\"key\":\"é\",\"ts\":\"1764028800123-00000-x\",\"value\":1}]}\n";
        let torn = &line.as_bytes()[..line.find('é').unwrap() + 1]; // ends inside the "é"
        let segment = [line.as_bytes(), b"\n", torn].concat();
        let mut doc = Document::default();
        let replay = doc.restore_log(&segment[..], 0).unwrap();
        assert_eq!(
            replay,
            LogReplay {
                entries: 1,
                torn: torn.len()
            }
        );
        assert_eq!(doc.lookup("é"), Some("1"));
        // Whole lines only: the same as the text's lines.
        let mut whole = Document::default();
        assert_eq!(whole.restore_log(line.as_bytes(), 0).unwrap().torn, 0);
        assert_eq!(whole.table_json(), doc.table_json());
        // A damaged line before the last is an error naming it, as in a text.
        let damaged = [line.as_bytes(), b"\xff\n", line.as_bytes()].concat();
        let Err(LoadError::Bad(error)) = Document::default().restore_log(&damaged[..], 0) else {
            panic!("a line that is not UTF-8 was read");
        };
        assert!(
            error.message.starts_with("log line 2: not UTF-8"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_file_read_in_pieces_restores_as_its_text_does() {
        let mut doc = Document::default();
        for i in 0..20_000u32 {
            let ts = format!("{}-00000-x", 1_764_028_800_000u64 + u64::from(i));
            doc.merge(&entry(&format!("key{i}"), &ts, Some("\"a value\"")));
        }
        let mut file = Vec::new();
        let fields = serde_json::Map::from_iter([("epoch".to_owned(), "e-1".into())]);
        doc.write_file_json(&mut file, &fields).unwrap();
        assert!(
            file.len() > 3 * READ_CHUNK,
            "{} bytes: not cut by reads",
            file.len()
        );
        let mut copy = Document::default();
        let meta = copy.restore_file(&file[..]).unwrap();
        assert_eq!(meta, r#"{"1":{"epoch":"e-1","horizon":0,"seq":20000}}"#);
        assert_eq!(copy.table_json(), doc.table_json());
        // Cut anywhere, it is an error, and a new document stays new.
        let Err(LoadError::Bad(error)) = copy.restore_file(&file[..file.len() / 2]) else {
            panic!("half a file was read");
        };
        assert!(
            error
                .message
                .starts_with("not a syncd TinyDB file: table record "),
            "{}",
            error.message
        );
        let mut new = Document::default();
        assert!(new.restore_file(&file[..file.len() - 1]).is_err());
        assert_eq!((new.seq(), new.entries().count()), (0, 0));
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
