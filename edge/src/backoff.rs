//! Exponential backoff with jitter, for MQTT reconnects and sink retries.

use std::time::Duration;

/// Delays that double from `min` up to `max`, with up to 25% random jitter so
/// a fleet of devices does not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    attempts: u32,
}

impl Backoff {
    pub fn new(min_ms: u64, max_ms: u64) -> Backoff {
        Backoff { min_ms: min_ms.max(1), max_ms: max_ms.max(min_ms.max(1)), attempts: 0 }
    }

    /// The delay before the next attempt; counts an attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.min_ms.saturating_mul(1u64 << self.attempts.min(20));
        self.attempts = self.attempts.saturating_add(1);
        let base = exp.min(self.max_ms);
        let jitter = rand::random_range(0..=base / 4);
        Duration::from_millis(base - base / 8 + jitter)
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut b = Backoff::new(100, 1000);
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(87) && first <= Duration::from_millis(113), "{first:?}");
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_millis(1125));
        }
        assert_eq!(b.attempts(), 31);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(113));
    }
}
