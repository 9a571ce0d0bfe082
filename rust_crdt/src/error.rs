//! The one error type of the core: a protocol error code, a message, and where it happened.
//!
//! Every failure caused by input from outside (a frame, an entry, a timestamp) is a
//! [`CrdtError`], never a panic. Its [`ErrorCode`] is the protocol's error code, so the
//! server can answer with it as is.

use std::fmt;

/// The protocol error codes (contract §6) that the core can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not JSON.
    BadJson,
    /// Not of the protocol's form: missing or ill-typed field, invalid entry.
    BadMessage,
    /// A key or value over its limit, or too many ops in one message.
    TooLarge,
    /// An entry's wall clock is too far ahead of the server's.
    ClockSkew,
}

impl ErrorCode {
    /// The code as it appears in an `error` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::ClockSkew => "clock_skew",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input: what is wrong, which entry of a batch (if any), and the id of the
/// message it answers (if the message had a readable one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CrdtError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// A human-readable explanation, naming the offending field.
    pub message: String,
    /// The index of the offending entry in its batch.
    pub entry: Option<usize>,
    /// The `id` of the `ops` message this error answers.
    pub id: Option<u64>,
}

impl CrdtError {
    /// An error with no entry or message id attached.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CrdtError {
            code,
            message: message.into(),
            entry: None,
            id: None,
        }
    }

    /// A `bad_message` error.
    pub fn bad_message(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadMessage, message)
    }

    /// Attaches the index of the offending entry, prefixing the message with it.
    pub fn at_entry(mut self, index: usize) -> Self {
        self.message = format!("ops[{index}]: {}", self.message);
        self.entry = Some(index);
        self
    }

    /// Attaches the id of the message this error answers.
    pub fn with_id(mut self, id: Option<u64>) -> Self {
        self.id = id;
        self
    }
}

/// The result type of the core.
pub type Result<T, E = CrdtError> = std::result::Result<T, E>;
