//! The CRDT core of syncd: a Last-Write-Wins element dictionary keyed by strings, stamped
//! by a Hybrid Logical Clock, with a sequence index for deltas and a hot path that applies
//! a whole `ops` frame from JSON text.
#![deny(missing_docs)]

pub mod canonical;
pub mod clock;
pub mod document;
pub mod entry;
pub mod error;
pub mod frame;
mod growth;
pub mod persist;
mod pieces;
#[cfg(feature = "python")]
mod python;
mod texts;
pub mod timestamp;

pub use clock::Clock;
pub use document::{Document, EntryView, MergeOutcome, MAX_SEQ};
pub use entry::{Entry, Limits, DEFAULT_MAX_OPS, DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES};
pub use error::{CrdtError, ErrorCode};
pub use frame::{
    FrameOutcome, OpsFrame, SkewCheck, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SKEW_MS, MAX_ID,
};
pub use timestamp::Timestamp;
