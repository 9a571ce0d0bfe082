//! Canonical JSON text of values (RFC 8785, the JSON Canonicalization Scheme).
//!
//! Values are stored and compared as their canonical text, so equal values have equal
//! text in every language and the tie rule of the merge is the same everywhere.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{CrdtError, Result};

/// The canonical text of a JSON value given as JSON text.
///
/// Fails with `bad_message` for text that is not one JSON value, numbers that overflow a
/// double, and strings holding an unpaired surrogate.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>> {
    if is_canonical_plain_string(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| CrdtError::bad_message(format!("invalid value: {e}")))?;
    canonical_text(&value).map(Cow::Owned)
}

/// The canonical text of a parsed JSON value.
pub fn canonical_text(value: &Value) -> Result<String> {
    serde_json_canonicalizer::to_string(value)
        .map_err(|e| CrdtError::bad_message(format!("invalid value: {e}")))
}

/// A JSON string literal without escapes is already canonical: RFC 8785 writes every
/// character but `"`, `\` and controls (which JSON forbids unescaped) as itself.
fn is_canonical_plain_string(raw: &str) -> bool {
    raw.len() >= 2
        && raw.starts_with('"')
        && raw.ends_with('"')
        && !raw[1..raw.len() - 1]
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_and_normalises_numbers() {
        assert_eq!(
            canonicalize(r#"{"b": 1.0, "a": [1e2, -0, "x"]}"#).unwrap(),
            r#"{"a":[100,0,"x"],"b":1}"#
        );
    }

    #[test]
    fn plain_strings_pass_through() {
        assert!(matches!(
            canonicalize("\"héllo\"").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(canonicalize(r#""a\u0041""#).unwrap(), "\"aA\"");
    }

    #[test]
    fn rejects_what_json_cannot_carry() {
        assert!(canonicalize("1e400").is_err());
        assert!(canonicalize(r#""\ud800""#).is_err());
        assert!(canonicalize("NaN").is_err());
        assert!(canonicalize("").is_err());
    }
}
