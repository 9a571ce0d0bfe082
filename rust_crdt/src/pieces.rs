//! JSON read from a stream one value at a time through a buffer of [`READ_CHUNK`] bytes,
//! so that a stored document (tens of MB at a million keys, issue #14) is never held
//! whole while it is read.
//!
//! The caller walks the structure it expects, objects member by member
//! ([`Pieces::object`]), and takes each value whole ([`Pieces::value`]), as its raw
//! text or as any type that serde_json reads borrowing from the buffer (a table's
//! record goes straight into an entry). The text is checked as UTF-8 once, as it is
//! read; a value cut by the buffer's end is parsed again once the buffer is refilled
//! (with as many bytes again as it holds, if the value is larger), so only one value at
//! a time is ever parsed twice. Every byte is checked as serde_json checks a whole text,
//! and errors name the line and column in the whole stream, as its errors do.

use std::io::{self, Read};

use serde::Deserialize;
use serde_json::error::Category;
use serde_json::value::RawValue;

use crate::entry::Text;
use crate::error::CrdtError;

/// The bytes read from the stream at a time; the buffer only grows for a larger value.
pub const READ_CHUNK: usize = 256 << 10;

/// Why a stored document could not be read: the stream failed, or what it holds is not
/// what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The content is malformed.
    #[error(transparent)]
    Bad(#[from] CrdtError),
}

impl LoadError {
    /// Prefixes the message of a content error with `what` was being read.
    pub(crate) fn within(self, what: &str) -> Self {
        match self {
            LoadError::Bad(error) => LoadError::Bad(CrdtError::new(
                error.code,
                format!("{what}: {}", error.message),
            )),
            io => io,
        }
    }

    /// The error of a stream that cannot fail (a text in memory), as a content error.
    pub(crate) fn into_crdt(self) -> CrdtError {
        match self {
            LoadError::Bad(error) => error,
            LoadError::Io(error) => CrdtError::bad_message(error.to_string()),
        }
    }
}

/// A type that [`Pieces::value`] reads, borrowing from the buffer for `'a` as `Of<'a>`.
pub(crate) trait Borrowing {
    /// The type read from a buffer that lives for `'a`.
    type Of<'a>: Deserialize<'a>;
}

/// Any JSON value, as its text.
pub(crate) struct Raw;

impl Borrowing for Raw {
    type Of<'a> = &'a RawValue;
}

/// A JSON stream being read value by value.
pub(crate) struct Pieces<R> {
    reader: R,
    /// The text read and checked as UTF-8, not yet discarded: `text[start..]` is still to
    /// be taken.
    text: String,
    start: usize,
    /// Bytes read but not yet in `text`: a character cut by the end of a read.
    unchecked: Vec<u8>,
    /// The stream has no more bytes.
    exhausted: bool,
    /// Where `text` begins in the stream: its line (from 1) and the bytes before it on
    /// that line.
    line: usize,
    column: usize,
}

impl<R: Read> Pieces<R> {
    pub(crate) fn new(reader: R) -> Self {
        Pieces {
            reader,
            text: String::with_capacity(READ_CHUNK),
            start: 0,
            unchecked: Vec::with_capacity(READ_CHUNK),
            exhausted: false,
            line: 1,
            column: 0,
        }
    }

    /// Reads an object, calling `member` with each key; `member` must take the value.
    /// `what` names the object in the error if there is none.
    pub(crate) fn object(
        &mut self,
        what: &str,
        mut member: impl FnMut(&mut Self, &str) -> Result<(), LoadError>,
    ) -> Result<(), LoadError> {
        if self.peek()? != Some(b'{') {
            return Err(self.error(&format!("expected {what}")));
        }
        self.start += 1;
        if self.peek()? == Some(b'}') {
            self.start += 1;
            return Ok(());
        }
        let mut key = String::new();
        loop {
            if self.peek()? != Some(b'"') {
                return Err(self.error("key must be a string"));
            }
            self.key(&mut key)?;
            self.take(b':', "expected `:`")?;
            member(self, &key)?;
            match self.peek()? {
                Some(b',') => self.start += 1,
                Some(b'}') => {
                    self.start += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// Takes the next value, read as a `T` borrowed from the buffer, and hands it to
    /// `take`.
    pub(crate) fn value<T: Borrowing, U>(
        &mut self,
        take: impl for<'a> FnOnce(T::Of<'a>) -> Result<U, LoadError>,
    ) -> Result<U, LoadError> {
        loop {
            self.peek()?;
            {
                let rest = &self.text[self.start..];
                let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<T::Of<'_>>();
                match stream.next() {
                    // A value that ends where the buffer does may go on (a number): read on.
                    Some(Ok(raw)) if self.exhausted || stream.byte_offset() < rest.len() => {
                        let taken = stream.byte_offset();
                        let value = take(raw);
                        self.start += taken;
                        return value;
                    }
                    Some(Err(error)) if self.exhausted || error.classify() != Category::Eof => {
                        return Err(self.json_error(&error));
                    }
                    None if self.exhausted => return Err(self.error("EOF while parsing a value")),
                    _ => {}
                }
            }
            self.refill()?;
        }
    }

    /// Checks that only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), LoadError> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// Skips whitespace; the next byte, not taken, or `None` at the end of the stream.
    fn peek(&mut self) -> Result<Option<u8>, LoadError> {
        loop {
            let rest = &self.text.as_bytes()[self.start..];
            if let Some(blank) = rest.iter().position(|b| !is_blank(*b)) {
                self.start += blank;
                return Ok(Some(rest[blank]));
            }
            self.start += rest.len();
            if self.exhausted {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// Takes a string, whose opening quote is next, into `out`.
    fn key(&mut self, out: &mut String) -> Result<(), LoadError> {
        out.clear();
        // Most keys (a record's seq) have no escape and are not cut by the buffer's end.
        let rest = &self.text[self.start + 1..];
        if let Some(end) = memchr::memchr2(b'"', b'\\', rest.as_bytes()) {
            if rest.as_bytes()[end] == b'"' && rest.bytes().take(end).all(|b| b >= 0x20) {
                out.push_str(&rest[..end]);
                self.start += end + 2;
                return Ok(());
            }
        }
        self.value::<Raw, _>(|raw| {
            let text: Text<'_> = serde_json::from_str(raw.get())
                .map_err(|e| CrdtError::bad_message(format!("key must be a string: {e}")))?;
            out.push_str(&text.0);
            Ok(())
        })
    }

    /// Takes the next byte, which must be `byte`.
    fn take(&mut self, byte: u8, otherwise: &str) -> Result<(), LoadError> {
        if self.peek()? != Some(byte) {
            return Err(self.error(otherwise));
        }
        self.start += 1;
        Ok(())
    }

    /// Discards the text taken and reads [`READ_CHUNK`] bytes more, or as many as the
    /// text left holds if that is more (a value larger than the buffer doubles it).
    fn refill(&mut self) -> Result<(), LoadError> {
        (self.line, self.column) = self.position_of(self.start);
        self.text.drain(..self.start);
        self.start = 0;
        let wanted = self.text.len().max(READ_CHUNK) as u64;
        let read = (&mut self.reader)
            .take(wanted)
            .read_to_end(&mut self.unchecked)?;
        self.exhausted = (read as u64) < wanted;
        // Checked as UTF-8 once, here, so that every value is parsed from a `str`.
        let (valid, invalid) = match std::str::from_utf8(&self.unchecked) {
            Ok(text) => (text, None),
            Err(error) => {
                let valid = &self.unchecked[..error.valid_up_to()];
                let valid = std::str::from_utf8(valid).expect("checked up to here");
                (
                    valid,
                    (error.error_len().is_some() || self.exhausted).then_some(error),
                )
            }
        };
        self.text.push_str(valid);
        let taken = valid.len();
        if let Some(error) = invalid {
            self.start = self.text.len();
            return Err(self.error(&format!(
                "not UTF-8 text ({} bytes)",
                error.error_len().unwrap_or(self.unchecked.len() - taken)
            )));
        }
        self.unchecked.drain(..taken);
        Ok(())
    }

    /// The line of `text[at]`, and the bytes before it on that line.
    fn position_of(&self, at: usize) -> (usize, usize) {
        let before = &self.text.as_bytes()[..at];
        match memchr::memrchr(b'\n', before) {
            None => (self.line, self.column + at),
            Some(last) => (
                self.line + memchr::memchr_iter(b'\n', before).count(),
                at - last - 1,
            ),
        }
    }

    /// An error at the next byte.
    fn error(&self, message: &str) -> LoadError {
        let (line, column) = self.position_of(self.start);
        let column = column + 1;
        CrdtError::bad_message(format!("{message} at line {line} column {column}")).into()
    }

    /// serde_json's error for the bytes from `buffer[start]`, placed in the stream.
    fn json_error(&self, error: &serde_json::Error) -> LoadError {
        let (line, column) = self.position_of(self.start);
        let text = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text);
        let (line, column) = match error.line() {
            0 => return CrdtError::bad_message(message).into(),
            1 => (line, column + error.column()),
            more => (line + more - 1, error.column()),
        };
        CrdtError::bad_message(format!("{message} at line {line} column {column}")).into()
    }
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\n' | b'\t' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives at most `step` bytes at a time, to cut values anywhere.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// Every member of an object of values, as (key, raw value) pairs.
    fn members(reader: impl Read) -> Result<Vec<(String, String)>, String> {
        let mut pieces = Pieces::new(reader);
        let mut found = Vec::new();
        pieces
            .object("an object", |pieces, key| {
                let value = pieces.value::<Raw, _>(|raw| Ok(raw.get().to_owned()))?;
                found.push((key.to_owned(), value));
                Ok(())
            })
            .and_then(|()| pieces.end())
            .map_err(|e| e.to_string())?;
        Ok(found)
    }

    #[test]
    fn values_cut_by_the_buffer_are_read_whole() {
        let big = "x".repeat(3 * READ_CHUNK);
        let text = format!(
            "{{ \"a\\u0062\" : 12345 ,\n\"big\":\"{big}\", \"n\": [1, {{\"k\": null}}], \"z\":-0.5e3 }}\n"
        );
        let expected = vec![
            ("ab".to_owned(), "12345".to_owned()),
            ("big".to_owned(), format!("\"{big}\"")),
            ("n".to_owned(), "[1, {\"k\": null}]".to_owned()),
            ("z".to_owned(), "-0.5e3".to_owned()),
        ];
        assert_eq!(members(text.as_bytes()).unwrap(), expected);
        for step in [1, 2, 3, 7, 4096] {
            let trickle = Trickle {
                bytes: text.as_bytes(),
                step,
            };
            assert_eq!(members(trickle).unwrap(), expected, "step {step}");
        }
        assert_eq!(members("{}".as_bytes()).unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_line_and_column_in_the_whole_stream() {
        let padding = " ".repeat(READ_CHUNK + 10);
        let cases = [
            ("[1]", "expected an object at line 1 column 1"),
            ("", "expected an object at line 1 column 1"),
            ("{\"a\" 1}", "expected `:` at line 1 column 6"),
            (
                "{\"a\":1 \"b\":2}",
                "expected `,` or `}` at line 1 column 8",
            ),
            ("{\"a\":1,}", "key must be a string at line 1 column 8"),
            ("{\"a\":1} x", "trailing characters at line 1 column 9"),
            ("{\"a\":\n  [1,,2]}", "expected value at line 2 column 6"),
            (
                "{\"a\":\"open",
                "EOF while parsing a string at line 1 column 10",
            ),
            ("{\"a\":", "EOF while parsing a value at line 1 column 6"),
        ];
        for (text, message) in cases {
            assert_eq!(members(text.as_bytes()).unwrap_err(), message, "{text:?}");
        }
        // Inside a value, past a refill: where serde_json puts it in the whole text.
        let far = format!("{{\"a\":1,{padding}\n\n  \"b\":tru}}");
        let whole = serde_json::from_str::<serde::de::IgnoredAny>(&far).unwrap_err();
        assert_eq!(members(far.as_bytes()).unwrap_err(), whole.to_string());
        assert_eq!(whole.to_string(), "expected ident at line 3 column 10");
        let bad_utf8: &[u8] = b"{\"a\":\"\xff\"}";
        assert_eq!(
            members(bad_utf8).unwrap_err(),
            "not UTF-8 text (1 bytes) at line 1 column 7"
        );
        // A character cut by the end of a read is whole once the next read comes; cut by
        // the end of the stream, it is not UTF-8.
        let padding = "x".repeat(READ_CHUNK - "{\"a\":\"".len() - 1);
        let straddling = format!("{{\"a\":\"{padding}é\"}}");
        assert_eq!(straddling.as_bytes()[READ_CHUNK - 1], "é".as_bytes()[0]);
        let value = format!("\"{padding}é\"");
        assert_eq!(
            members(straddling.as_bytes()).unwrap(),
            [("a".into(), value)]
        );
        let accented = "{\"é\":\"à\"}";
        let cut = &accented.as_bytes()[..3];
        assert_eq!(
            members(cut).unwrap_err(),
            "not UTF-8 text (1 bytes) at line 1 column 3"
        );
    }
}
