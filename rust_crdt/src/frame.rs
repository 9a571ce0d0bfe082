//! The hot path: an `ops` frame as JSON text in, the broadcast frame as JSON text out.
//!
//! The frame is validated as a whole before anything is merged (contract §5): one invalid
//! entry rejects it all, applying nothing.

use std::fmt;

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::document::Document;
use crate::entry::{is_json_object, write_entry_json, Entry, Limits, Text, WireEntry};
use crate::error::{CrdtError, ErrorCode, Result};

/// The greatest message id: 2^53 − 1, the largest integer every JSON client holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// The default of how far, in milliseconds, an entry may be ahead of the server's clock
/// (contract §2, `max_skew`).
pub const DEFAULT_MAX_SKEW_MS: u64 = 60_000;

/// The default frame limit, in bytes (contract §6): the largest message a server accepts,
/// and the size `entries` frames are cut to.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// The server's clock, for rejecting entries too far ahead of it (contract §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewCheck {
    /// The server's wall clock, in milliseconds since the epoch.
    pub now_ms: u64,
    /// How far ahead of `now_ms` an entry's wall field may be.
    pub max_skew_ms: u64,
}

/// A validated `ops` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsFrame<'a> {
    /// The client's message id, echoed in the ack.
    pub id: u64,
    /// The entries, each valid.
    pub entries: Vec<Entry<'a>>,
}

/// What applying an `ops` message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameOutcome {
    /// The message id.
    pub id: u64,
    /// Entries that won, each taking the next seq.
    pub applied: usize,
    /// Entries that lost.
    pub ignored: usize,
    /// The document's head once the message is merged.
    pub seq: u64,
    /// The applied entries' wire form, comma-separated: the inside of a broadcast's
    /// `ops` array, so that consecutive messages of one origin can be coalesced.
    pub ops_json: String,
    /// The entries that lost to a different entry of their key: each one's wire form and
    /// the timestamp of the entry that beat it. A copy of the winner itself (a write sent
    /// again) is no conflict and is left out. Empty, without allocating, when all won.
    pub lost: Vec<(String, String)>,
}

impl FrameOutcome {
    /// The ack frame for the writer.
    pub fn ack_json(&self) -> String {
        format!(
            "{{\"type\":\"ack\",\"id\":{},\"seq\":{},\"applied\":{},\"ignored\":{}}}",
            self.id, self.seq, self.applied, self.ignored
        )
    }

    /// The broadcast frame for the document's other clients, or `None` when nothing applied.
    pub fn broadcast_json(&self, origin: &str) -> Option<String> {
        (self.applied > 0).then(|| broadcast_json(self.seq, origin, &self.ops_json))
    }
}

/// A broadcast `ops` frame from the comma-separated wire form of its entries.
pub fn broadcast_json(seq: u64, origin: &str, ops_json: &str) -> String {
    let origin = serde_json::to_string(origin).expect("a &str always serializes");
    format!("{{\"type\":\"ops\",\"seq\":{seq},\"origin\":{origin},\"ops\":[{ops_json}]}}")
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ops: Option<&'a RawValue>,
}

/// The `type` of a frame from a client, read without validating the rest of it, so that
/// the server dispatches without parsing a frame twice.
pub fn frame_type(text: &str) -> Result<String> {
    let frame = parse_raw(text)?;
    frame
        .kind
        .and_then(|k| serde_json::from_str::<String>(k.get()).ok())
        .ok_or_else(|| CrdtError::bad_message("a frame needs a string \"type\""))
}

fn parse_raw(text: &str) -> Result<RawFrame<'_>> {
    let frame: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
        // The struct may fail on valid JSON (an array, a number) or on text that starts
        // like JSON and then is not: only a check of the whole text tells them apart.
        match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => CrdtError::bad_message(format!("a frame must be a JSON object: {e}")),
            Err(e) => CrdtError::new(ErrorCode::BadJson, format!("frame is not JSON: {e}")),
        }
    })?;
    if !is_json_object(text) {
        // An array that serde would read as the struct's fields in order.
        return Err(CrdtError::bad_message("a frame must be a JSON object"));
    }
    Ok(frame)
}

/// A valid `ops` frame's fields, read in one pass; each entry is checked as it is read
/// (against the fixed limits: the document's own are checked after).
struct TypedFrame<'a> {
    kind: Cow<'a, str>,
    id: u64,
    entries: Vec<Entry<'a>>,
}

impl<'a> TypedFrame<'a> {
    /// Reads the frame; `None` for anything but a well-formed one.
    fn read(text: &'a str) -> Option<Self> {
        // About 60 bytes of text per entry: room for them all without growing.
        let seed = FrameSeed {
            capacity: text.len() / 60 + 1,
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let frame = seed.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        Some(frame)
    }
}

struct FrameSeed {
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for FrameSeed {
    type Value = TypedFrame<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FrameSeed {
    type Value = TypedFrame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ops frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut kind, mut id, mut entries) = (None, None, None);
        while let Some(field) = map.next_key::<Text<'de>>()? {
            let duplicate = match &*field.0 {
                "type" => kind.replace(map.next_value::<Text<'de>>()?.0).is_some(),
                "id" => id.replace(map.next_value::<u64>()?).is_some(),
                "ops" => entries
                    .replace(map.next_value_seed(EntriesSeed {
                        capacity: self.capacity,
                    })?)
                    .is_some(),
                _ => map.next_value::<IgnoredAny>().map(|_| false)?,
            };
            if duplicate {
                return Err(de::Error::custom("duplicate field"));
            }
        }
        match (kind, id, entries) {
            (Some(kind), Some(id), Some(entries)) => Ok(TypedFrame { kind, id, entries }),
            _ => Err(de::Error::custom("missing field")),
        }
    }
}

/// The `ops` array, each entry checked as it is read, with no value limit.
struct EntriesSeed {
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<Entry<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<Entry<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let unlimited = Limits {
            max_value_bytes: usize::MAX,
            max_ops: usize::MAX,
        };
        let mut entries = Vec::with_capacity(self.capacity);
        while let Some(wire) = seq.next_element::<WireEntry<'de>>()? {
            entries.push(wire.check(&unlimited).map_err(de::Error::custom)?);
        }
        Ok(entries)
    }
}

impl<'a> OpsFrame<'a> {
    /// Parses and validates an `ops` message against the document's limits and, when given,
    /// the server's clock.
    pub fn parse(text: &'a str, doc: &Document, skew: Option<SkewCheck>) -> Result<Self> {
        match Self::parse_valid(text, doc, skew) {
            Some(frame) => Ok(frame),
            None => Self::parse_checked(text, doc, skew),
        }
    }

    /// The frame in one pass over the text, if it is valid; `None` for anything else, which
    /// [`OpsFrame::parse_checked`] then reads again to say exactly what is wrong.
    fn parse_valid(text: &'a str, doc: &Document, skew: Option<SkewCheck>) -> Option<Self> {
        let frame = TypedFrame::read(text)?;
        let limits = doc.limits();
        let entries = frame.entries;
        let count = entries.len();
        if frame.kind != "ops" || frame.id > MAX_ID || count == 0 || count > limits.max_ops {
            return None;
        }
        let within = |entry: &Entry<'_>| {
            entry
                .value
                .as_ref()
                .is_none_or(|v| v.len() <= limits.max_value_bytes)
                && skew.is_none_or(|skew| check_skew(entry, skew).is_ok())
        };
        entries.iter().all(within).then_some(OpsFrame {
            id: frame.id,
            entries,
        })
    }

    /// Parses the frame field by field, so that an invalid one gets the precise error.
    fn parse_checked(text: &'a str, doc: &Document, skew: Option<SkewCheck>) -> Result<Self> {
        let frame = parse_raw(text)?;
        let id = parse_id(frame.id);
        let kind = frame
            .kind
            .and_then(|k| serde_json::from_str::<std::borrow::Cow<'_, str>>(k.get()).ok());
        if kind.as_deref() != Some("ops") {
            return Err(CrdtError::bad_message("expected a frame of type \"ops\"").with_id(id.ok()));
        }
        let id = id?;
        let entries = parse_entries(frame.ops, doc, skew).map_err(|e| e.with_id(Some(id)))?;
        Ok(OpsFrame { id, entries })
    }
}

fn parse_id(raw: Option<&RawValue>) -> Result<u64> {
    let raw = raw.ok_or_else(|| CrdtError::bad_message("missing \"id\""))?;
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .filter(|&id| id <= MAX_ID)
        .ok_or_else(|| {
            CrdtError::bad_message(format!(
                "\"id\" must be an integer from 0 to {MAX_ID}, got {}",
                raw.get()
            ))
        })
}

fn parse_entries<'a>(
    raw: Option<&'a RawValue>,
    doc: &Document,
    skew: Option<SkewCheck>,
) -> Result<Vec<Entry<'a>>> {
    let raw = raw.ok_or_else(|| CrdtError::bad_message("missing \"ops\""))?;
    let items: Vec<&'a RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| CrdtError::bad_message("\"ops\" must be an array of entries"))?;
    let limits = doc.limits();
    if items.is_empty() {
        return Err(CrdtError::bad_message(
            "\"ops\" must hold at least one entry",
        ));
    }
    if items.len() > limits.max_ops {
        return Err(CrdtError::new(
            ErrorCode::TooLarge,
            format!(
                "{} ops in one message, over the limit of {}",
                items.len(),
                limits.max_ops
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let entry = Entry::from_json(item.get(), limits).map_err(|e| e.at_entry(i))?;
            if let Some(skew) = skew {
                check_skew(&entry, skew).map_err(|e| e.at_entry(i))?;
            }
            Ok(entry)
        })
        .collect()
}

fn check_skew(entry: &Entry<'_>, skew: SkewCheck) -> Result<()> {
    let ahead = entry.ts.wall().saturating_sub(skew.now_ms);
    if ahead > skew.max_skew_ms {
        return Err(CrdtError::new(
            ErrorCode::ClockSkew,
            format!(
                "ts {} is {ahead} ms ahead of the server's clock (at most {} allowed)",
                entry.ts, skew.max_skew_ms
            ),
        ));
    }
    Ok(())
}

impl Document {
    /// Validates an `ops` message as a whole, then merges its entries. Nothing is merged
    /// if any entry is invalid.
    pub fn apply_frame(&mut self, text: &str, skew: Option<SkewCheck>) -> Result<FrameOutcome> {
        let frame = OpsFrame::parse(text, self, skew)?;
        let mut ops = Vec::with_capacity(text.len() + 64);
        let mut lost = Vec::new();
        let merged = self.merge_each(
            &frame.entries,
            |entry| {
                if !ops.is_empty() {
                    ops.push(b',');
                }
                write_entry_json(
                    &mut ops,
                    &entry.key,
                    entry.ts.as_str(),
                    entry.value.as_deref(),
                );
            },
            |entry, winner| {
                let winner_ts = winner.ts();
                if winner_ts == entry.ts && winner.value == entry.value.as_deref() {
                    return; // the same write again
                }
                let mut json = Vec::new();
                write_entry_json(
                    &mut json,
                    &entry.key,
                    entry.ts.as_str(),
                    entry.value.as_deref(),
                );
                let json = String::from_utf8(json).expect("entries are written from UTF-8 strings");
                lost.push((json, winner_ts.as_str().to_owned()));
            },
        );
        Ok(FrameOutcome {
            id: frame.id,
            applied: merged.applied,
            ignored: merged.ignored,
            seq: merged.seq,
            ops_json: String::from_utf8(ops).expect("entries are written from UTF-8 strings"),
            lost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass reading must accept exactly the frames the field-by-field one does,
    /// and read them the same way: checked over every frame of the conformance vectors.
    #[test]
    fn both_readings_agree_on_the_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/frames.json");
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let doc = Document::default();
        let skew = Some(SkewCheck {
            now_ms: 1_764_028_800_000,
            max_skew_ms: 60_000,
        });
        let mut checked = 0;
        for group in ["valid", "invalid"] {
            for case in vectors[group].as_array().unwrap() {
                let Some(text) = case["frame"].as_str() else {
                    continue; // generated cases ("repeat") are covered by tests/vectors.rs
                };
                let fast = OpsFrame::parse_valid(text, &doc, skew);
                let slow = OpsFrame::parse_checked(text, &doc, skew);
                assert_eq!(fast, slow.ok(), "{text}");
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} frames checked");
    }

    #[test]
    fn lost_entries_name_their_winner_but_a_copy_of_the_winner_is_no_conflict() {
        let mut doc = Document::default();
        let newer = r#"{"key":"k","ts":"0000000000002-00000-b","value":"new"}"#;
        let older = r#"{"key":"k","ts":"0000000000001-00000-a","value":"old"}"#;
        let first = doc
            .apply_frame(&format!(r#"{{"type":"ops","id":1,"ops":[{newer}]}}"#), None)
            .unwrap();
        assert!(first.lost.is_empty());
        let second = doc
            .apply_frame(
                &format!(r#"{{"type":"ops","id":2,"ops":[{older},{newer}]}}"#),
                None,
            )
            .unwrap();
        assert_eq!(second.ignored, 2);
        assert_eq!(
            second.lost,
            vec![(older.to_owned(), "0000000000002-00000-b".to_owned())]
        );
    }
}
