//! The hot path: an `ops` frame as JSON text in, the broadcast frame as JSON text out.
//!
//! The frame is validated as a whole before anything is merged (contract §5): one invalid
//! entry rejects it all, applying nothing.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::document::Document;
use crate::entry::{is_json_object, write_entry_json, Entry};
use crate::error::{CrdtError, ErrorCode, Result};

/// The greatest message id: 2^53 − 1, the largest integer every JSON client holds exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

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
        if e.is_data() {
            CrdtError::bad_message(format!("invalid frame: {e}"))
        } else {
            CrdtError::new(ErrorCode::BadJson, format!("frame is not JSON: {e}"))
        }
    })?;
    if !is_json_object(text) {
        // An array that serde would read as the struct's fields in order.
        return Err(CrdtError::bad_message("a frame must be a JSON object"));
    }
    Ok(frame)
}

impl<'a> OpsFrame<'a> {
    /// Parses and validates an `ops` message against the document's limits and, when given,
    /// the server's clock.
    pub fn parse(text: &'a str, doc: &Document, skew: Option<SkewCheck>) -> Result<Self> {
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
        let mut outcome = FrameOutcome {
            id: frame.id,
            applied: 0,
            ignored: 0,
            seq: 0,
            ops_json: String::new(),
        };
        let mut ops = Vec::with_capacity(text.len());
        for entry in &frame.entries {
            if self.merge(entry) {
                if outcome.applied > 0 {
                    ops.push(b',');
                }
                write_entry_json(&mut ops, &entry.key, &entry.ts, entry.value.as_deref());
                outcome.applied += 1;
            } else {
                outcome.ignored += 1;
            }
        }
        outcome.seq = self.seq();
        outcome.ops_json = String::from_utf8(ops).expect("entries are written from UTF-8 strings");
        Ok(outcome)
    }
}
