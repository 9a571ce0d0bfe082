//! Hybrid Logical Clock timestamps in their wire form `WWWWWWWWWWWWW-CCCCC-NODE` (contract §2).
//!
//! The first two fields are fixed-width, so the derived ordering on
//! `(wall, counter, node)` equals plain string ordering of the wire form.

use std::fmt;

use crate::error::{CrdtError, Result};

/// The greatest wall field: 13 decimal digits.
pub const MAX_WALL: u64 = 9_999_999_999_999;
/// The greatest logical counter: 5 decimal digits.
pub const MAX_COUNTER: u32 = 99_999;
/// The longest node id.
pub const MAX_NODE_LEN: usize = 64;

const WALL_DIGITS: usize = 13;
const COUNTER_DIGITS: usize = 5;
const NODE_START: usize = WALL_DIGITS + 1 + COUNTER_DIGITS + 1;

/// Checks that `node` is a valid replica id: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_node(node: &str) -> Result<()> {
    if node.is_empty() || node.len() > MAX_NODE_LEN {
        return Err(CrdtError::bad_message(format!(
            "node id must be 1 to {MAX_NODE_LEN} characters, got {}",
            node.len()
        )));
    }
    if let Some(bad) = node
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(CrdtError::bad_message(format!(
            "node id {node:?} has {bad:?}; only A-Z a-z 0-9 _ - are allowed"
        )));
    }
    Ok(())
}

/// The longest wire form: 13 + 1 + 5 + 1 + 64 characters.
const MAX_TEXT: usize = NODE_START + MAX_NODE_LEN;

/// A parsed timestamp, holding its wire form inline (no allocation). Ordering is by wall,
/// then counter, then node, which is the wire form's string ordering.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    wall: u64,
    counter: u32,
    /// The wire form, ASCII, padded with zero bytes (which order before every character,
    /// so comparing the padded arrays compares the strings).
    text: [u8; MAX_TEXT],
    len: u8,
}

impl Timestamp {
    /// A timestamp from its parts; fails if a part is out of range.
    pub fn new(wall: u64, counter: u32, node: &str) -> Result<Self> {
        if wall > MAX_WALL {
            return Err(CrdtError::bad_message(format!(
                "wall {wall} has more than {WALL_DIGITS} digits"
            )));
        }
        if counter > MAX_COUNTER {
            return Err(CrdtError::bad_message(format!(
                "counter {counter} has more than {COUNTER_DIGITS} digits"
            )));
        }
        validate_node(node)?;
        let mut ts = Timestamp {
            wall,
            counter,
            text: [0; MAX_TEXT],
            len: (NODE_START + node.len()) as u8,
        };
        let mut digits = |start: usize, width: usize, mut value: u64| {
            for i in (start..start + width).rev() {
                ts.text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        digits(0, WALL_DIGITS, wall);
        digits(WALL_DIGITS + 1, COUNTER_DIGITS, u64::from(counter));
        ts.text[WALL_DIGITS] = b'-';
        ts.text[NODE_START - 1] = b'-';
        ts.text[NODE_START..usize::from(ts.len)].copy_from_slice(node.as_bytes());
        Ok(ts)
    }

    /// Parses the wire form, which must match `[0-9]{13}-[0-9]{5}-[A-Za-z0-9_-]{1,64}` whole.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |why: &str| {
            CrdtError::bad_message(format!(
                "invalid timestamp {text:?}: {why} (expected WWWWWWWWWWWWW-CCCCC-NODE)"
            ))
        };
        let bytes = text.as_bytes();
        if bytes.len() <= NODE_START {
            return Err(invalid("too short"));
        }
        let wall = parse_digits(&bytes[..WALL_DIGITS]).ok_or_else(|| invalid("wall field"))?;
        if bytes[WALL_DIGITS] != b'-' || bytes[NODE_START - 1] != b'-' {
            return Err(invalid("separators"));
        }
        let counter = parse_digits(&bytes[WALL_DIGITS + 1..NODE_START - 1])
            .ok_or_else(|| invalid("counter field"))?;
        validate_node(&text[NODE_START..]).map_err(|e| invalid(&e.message))?;
        let mut inline = [0; MAX_TEXT];
        inline[..bytes.len()].copy_from_slice(bytes);
        Ok(Timestamp {
            wall,
            counter: counter as u32,
            text: inline,
            len: bytes.len() as u8,
        })
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)])
            .expect("a timestamp's text is ASCII, checked when it was made")
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn wall(&self) -> u64 {
        self.wall
    }

    /// The logical counter.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The writing replica's node id.
    pub fn node(&self) -> &str {
        &self.as_str()[NODE_START..]
    }

    /// Wall and counter packed into one integer with the same ordering.
    pub fn packed(&self) -> u64 {
        pack(self.wall, self.counter)
    }
}

/// Packs a wall and counter into one `u64` ordered like the pair (wall < 2^44, counter < 2^17).
pub(crate) fn pack(wall: u64, counter: u32) -> u64 {
    (wall << 17) | u64::from(counter)
}

/// Splits a packed clock back into wall and counter.
pub(crate) fn unpack(packed: u64) -> (u64, u32) {
    (packed >> 17, (packed & 0x1_ffff) as u32)
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:?})", self.as_str())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = CrdtError;

    fn from_str(text: &str) -> Result<Self> {
        Timestamp::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        let text = "1764028800123-00000-tui-3f9a";
        let ts = Timestamp::parse(text).unwrap();
        assert_eq!(ts.wall(), 1_764_028_800_123);
        assert_eq!(ts.counter(), 0);
        assert_eq!(ts.node(), "tui-3f9a");
        assert_eq!(ts.to_string(), text);
    }

    #[test]
    fn ordering_equals_string_ordering() {
        let a = "1764028800123-00009-b";
        let b = "1764028800123-00010-a";
        assert!(Timestamp::parse(a).unwrap() < Timestamp::parse(b).unwrap());
        assert!(a < b);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1764028800123-00000-",
            "176402880012-00000-x",
            "1764028800123-0000-x",
            "1764028800123_00000-x",
            "1764028800123-00000-a b",
            "١764028800123-00000-x",
            " 1764028800123-00000-x",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn packing_preserves_order() {
        assert!(pack(1, MAX_COUNTER) < pack(2, 0));
        assert_eq!(unpack(pack(MAX_WALL, MAX_COUNTER)), (MAX_WALL, MAX_COUNTER));
    }
}
