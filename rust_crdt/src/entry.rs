//! Entries: the winning write for one key, a live value or a tombstone, and their wire form.

use std::borrow::Cow;

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::canonical::canonicalize;
use crate::error::{CrdtError, ErrorCode, Result};
use crate::timestamp::Timestamp;

/// The longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The default longest canonical JSON text of a value, in bytes (contract §1).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 65_536;

/// The default most entries in one `ops` message (contract §5).
pub const DEFAULT_MAX_OPS: usize = 1000;

/// Limits that every incoming entry and message is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest canonical JSON text of a value, in bytes.
    pub max_value_bytes: usize,
    /// The most entries in one `ops` message.
    pub max_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_ops: DEFAULT_MAX_OPS,
        }
    }
}

/// One write: a key, its timestamp, and the value's canonical JSON text (`None` for a
/// tombstone). Borrowed from the frame it was parsed from where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The key.
    pub key: Cow<'a, str>,
    /// When, and by which replica, it was written.
    pub ts: Timestamp,
    /// The canonical JSON text of the value, or `None` for a delete.
    pub value: Option<Cow<'a, str>>,
}

impl<'a> Entry<'a> {
    /// An entry from its parts, checked against `limits`; `value` must already be
    /// canonical JSON text (see [`crate::canonical`]).
    pub fn new(
        key: impl Into<Cow<'a, str>>,
        ts: Timestamp,
        value: Option<Cow<'a, str>>,
        limits: &Limits,
    ) -> Result<Self> {
        let entry = Entry {
            key: key.into(),
            ts,
            value,
        };
        entry.check(limits)?;
        Ok(entry)
    }

    /// Parses one wire entry, `{"key", "ts", "value" | "deleted": true}`, checked against `limits`.
    pub fn from_json(text: &'a str, limits: &Limits) -> Result<Self> {
        let raw: WireEntry<'a> = serde_json::from_str(text)
            .map_err(|e| CrdtError::bad_message(format!("not an entry object: {e}")))?;
        raw.check(limits)
    }

    /// An owned copy that outlives the text it was parsed from.
    pub fn into_owned(self) -> Entry<'static> {
        Entry {
            key: Cow::Owned(self.key.into_owned()),
            ts: self.ts,
            value: self.value.map(|v| Cow::Owned(v.into_owned())),
        }
    }

    /// Whether this entry is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.value.is_none()
    }

    fn check(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key)?;
        if let Some(value) = &self.value {
            check_value_size(value, limits.max_value_bytes)?;
        }
        Ok(())
    }
}

/// Checks a key: not empty, at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(CrdtError::bad_message("key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CrdtError::new(
            ErrorCode::TooLarge,
            format!(
                "key is {} bytes, over the limit of {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Checks the canonical JSON text of a value against the limit of `max_value_bytes`.
pub fn check_value_size(text: &str, max_value_bytes: usize) -> Result<()> {
    if text.len() > max_value_bytes {
        return Err(CrdtError::new(
            ErrorCode::TooLarge,
            format!(
                "value is {} bytes of JSON, over the limit of {max_value_bytes}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Whether JSON text is an object rather than another kind of value. Checked before
/// deserializing into a struct, because serde also fills a struct from an array of its
/// fields in order, which would accept `["k", "ts", 1]` as an entry.
pub(crate) fn is_json_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// An entry's fields as they arrive, before validation. `value: null` is a present value,
/// so `value` and `deleted` are kept raw rather than as `Option`s that would swallow `null`.
/// Only a JSON object is an entry: serde's derive would also read an array of the fields
/// in order, so deserializing is written out.
#[derive(Default)]
pub(crate) struct WireEntry<'a> {
    key: Option<Cow<'a, str>>,
    ts: Option<Cow<'a, str>>,
    value: Option<&'a RawValue>,
    deleted: Option<&'a RawValue>,
}

impl<'a> WireEntry<'a> {
    /// The entry these fields make, checked against the protocol and `limits`.
    pub(crate) fn check(self, limits: &Limits) -> Result<Entry<'a>> {
        let key = self
            .key
            .ok_or_else(|| CrdtError::bad_message("missing \"key\""))?;
        let ts = self
            .ts
            .ok_or_else(|| CrdtError::bad_message("missing \"ts\""))?;
        let ts = Timestamp::parse(&ts)?;
        let value = match (self.value, self.deleted) {
            (Some(_), Some(_)) => {
                return Err(CrdtError::bad_message(
                    "an entry has \"value\" or \"deleted\", never both",
                ))
            }
            (None, None) => {
                return Err(CrdtError::bad_message(
                    "an entry needs \"value\" or \"deleted\": true",
                ))
            }
            (None, Some(deleted)) if deleted.get() != "true" => {
                return Err(CrdtError::bad_message(
                    "\"deleted\", when present, must be true",
                ))
            }
            (None, Some(_)) => None,
            (Some(value), None) => Some(canonicalize(value.get())?),
        };
        Entry::new(key, ts, value, limits)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for WireEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireEntryVisitor(PhantomData))
    }
}

struct WireEntryVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for WireEntryVisitor<'a> {
    type Value = WireEntry<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireEntry<'a>, A::Error> {
        fn once<T, E: de::Error>(
            slot: &mut Option<T>,
            value: T,
            name: &'static str,
        ) -> Result<(), E> {
            match slot.replace(value) {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let mut entry = WireEntry::default();
        while let Some(field) = map.next_key::<Text<'a>>()? {
            match &*field.0 {
                "key" => once(&mut entry.key, map.next_value::<Text<'a>>()?.0, "key")?,
                "ts" => once(&mut entry.ts, map.next_value::<Text<'a>>()?.0, "ts")?,
                "value" => once(&mut entry.value, map.next_value()?, "value")?,
                "deleted" => once(&mut entry.deleted, map.next_value()?, "deleted")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(entry)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Writes one entry in its wire form, `{"key":…,"ts":…,"value":…}` or `…,"deleted":true}`.
pub fn write_entry_json(out: &mut Vec<u8>, key: &str, ts: &str, value: Option<&str>) {
    out.extend_from_slice(b"{\"key\":");
    if key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
    } else {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"ts\":\"");
    // A valid timestamp is ASCII digits, dashes and [A-Za-z0-9_-]: nothing to escape.
    out.extend_from_slice(ts.as_bytes());
    match value {
        Some(value) => {
            out.extend_from_slice(b"\",\"value\":");
            out.extend_from_slice(value.as_bytes());
            out.push(b'}');
        }
        None => out.extend_from_slice(b"\",\"deleted\":true}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Entry<'_>> {
        Entry::from_json(text, &Limits::default())
    }

    #[test]
    fn parses_live_and_deleted() {
        let live =
            parse(r#"{"key":"k","ts":"1764028800123-00000-a","value":{"b":1,"a":2}}"#).unwrap();
        assert_eq!(live.value.as_deref(), Some(r#"{"a":2,"b":1}"#));
        let gone =
            parse(r#"{"key":"k","ts":"1764028800123-00000-a","deleted":true,"x":1}"#).unwrap();
        assert!(gone.is_deleted());
    }

    #[test]
    fn null_is_a_value() {
        let entry = parse(r#"{"key":"k","ts":"1764028800123-00000-a","value":null}"#).unwrap();
        assert_eq!(entry.value.as_deref(), Some("null"));
    }

    #[test]
    fn rejects_invalid_entries_with_their_code() {
        let cases = [
            (
                r#"{"ts":"1764028800123-00000-a","value":1}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":"","ts":"1764028800123-00000-a","value":1}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":"k","ts":"nope","value":1}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":"k","ts":"1764028800123-00000-a"}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":"k","ts":"1764028800123-00000-a","value":1,"deleted":true}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":"k","ts":"1764028800123-00000-a","deleted":false}"#,
                ErrorCode::BadMessage,
            ),
            (
                r#"{"key":3,"ts":"1764028800123-00000-a","value":1}"#,
                ErrorCode::BadMessage,
            ),
            (r#"[1]"#, ErrorCode::BadMessage),
            (r#"["k","1764028800123-00000-a",1]"#, ErrorCode::BadMessage),
        ];
        for (text, code) in cases {
            assert_eq!(parse(text).unwrap_err().code, code, "{text}");
        }
        let long_key = format!(
            r#"{{"key":"{}","ts":"1764028800123-00000-a","value":1}}"#,
            "k".repeat(1025)
        );
        assert_eq!(parse(&long_key).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn writes_keys_that_need_escapes_escaped() {
        for key in ["plain", "a\"b", "back\\slash", "tab\there", "\u{1}", "é😀"] {
            let mut out = Vec::new();
            write_entry_json(&mut out, key, "1764028800123-00000-a", None);
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed["key"], key);
        }
    }

    #[test]
    fn writes_the_wire_form() {
        let mut out = Vec::new();
        write_entry_json(&mut out, "a\"b", "1764028800123-00000-a", Some("1"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"key":"a\"b","ts":"1764028800123-00000-a","value":1}"#
        );
    }
}
