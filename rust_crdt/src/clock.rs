//! The Hybrid Logical Clock (Kulkarni et al., 2014) that stamps a replica's writes.
//!
//! A new local timestamp is strictly greater than every timestamp the clock has issued or
//! observed; when the counter would pass 99999 the wall field advances by one instead.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CrdtError, ErrorCode, Result};
use crate::timestamp::{validate_node, Timestamp, MAX_COUNTER, MAX_WALL};

/// Milliseconds since the Unix epoch by the system clock (0 if it is set before 1970).
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A replica's clock: the greatest (wall, counter) it has issued or observed.
#[derive(Debug, Clone)]
pub struct Clock {
    node: Box<str>,
    wall: u64,
    counter: u32,
}

impl Clock {
    /// A clock for the replica `node`, which must be a valid node id.
    pub fn new(node: &str) -> Result<Self> {
        validate_node(node)?;
        Ok(Clock {
            node: node.into(),
            wall: 0,
            counter: 0,
        })
    }

    /// The replica's node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The greatest (wall, counter) issued or observed so far.
    pub fn last(&self) -> (u64, u32) {
        (self.wall, self.counter)
    }

    /// A timestamp for a local write, by the system clock.
    pub fn now(&mut self) -> Result<Timestamp> {
        self.tick(wall_clock_ms())
    }

    /// A timestamp for a local write when the physical clock reads `physical_ms`.
    pub fn tick(&mut self, physical_ms: u64) -> Result<Timestamp> {
        let physical = physical_ms.min(MAX_WALL);
        let (wall, counter) = if physical > self.wall {
            (physical, 0)
        } else if self.counter < MAX_COUNTER {
            (self.wall, self.counter + 1)
        } else {
            (self.wall + 1, 0)
        };
        if (wall, counter) <= (self.wall, self.counter) || wall > MAX_WALL {
            return Err(CrdtError::new(
                ErrorCode::ClockSkew,
                "the clock cannot advance past 9999999999999-99999",
            ));
        }
        self.wall = wall;
        self.counter = counter;
        Timestamp::new(wall, counter, &self.node)
    }

    /// Takes a received timestamp into account, so later local writes order after it.
    pub fn observe(&mut self, remote: &Timestamp) {
        let seen = (remote.wall(), remote.counter());
        if seen > (self.wall, self.counter) {
            (self.wall, self.counter) = seen;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ticks_are_strictly_increasing_when_the_wall_clock_stands_still() {
        let mut clock = Clock::new("a").unwrap();
        let first = clock.tick(1000).unwrap();
        let second = clock.tick(1000).unwrap();
        let third = clock.tick(999).unwrap();
        assert!(first < second && second < third);
        assert_eq!(third.to_string(), "0000000001000-00002-a");
    }

    #[test]
    fn counter_overflow_advances_the_wall() {
        let mut clock = Clock::new("a").unwrap();
        clock.observe(&Timestamp::new(5, MAX_COUNTER, "b").unwrap());
        assert_eq!(clock.tick(5).unwrap().to_string(), "0000000000006-00000-a");
    }

    #[test]
    fn observed_timestamps_order_before_the_next_tick() {
        let mut clock = Clock::new("a").unwrap();
        let remote = Timestamp::parse("9000000000000-00007-zzz").unwrap();
        clock.observe(&remote);
        let next = clock.tick(1).unwrap();
        assert!(next > remote);
        assert_eq!(next.to_string(), "9000000000000-00008-a");
    }

    #[test]
    fn the_end_of_time_is_an_error_not_a_repeat() {
        let mut clock = Clock::new("a").unwrap();
        clock.observe(&Timestamp::new(MAX_WALL, MAX_COUNTER, "b").unwrap());
        assert!(clock.tick(0).is_err());
    }
}
