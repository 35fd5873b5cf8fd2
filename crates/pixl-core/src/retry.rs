//! The one backoff policy of pixl: a pause that doubles with each attempt, up to a cap.
//! Consumers use it for the delay before a message comes back, clients (hasher, broker
//! reconnection) between tries.

use std::time::Duration;

/// Doubling pauses: `first`, `2 × first`, `4 × first`... never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The pause after attempt `attempt` (1 for the first failure).
    pub fn pause(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.first.saturating_mul(factor).min(self.max)
    }

    /// An endless sequence of pauses, for a loop that tries until it succeeds.
    pub fn iter(&self) -> Pauses {
        Pauses { backoff: *self, attempt: 0 }
    }
}

/// The pauses of a [`Backoff`], one per failed try.
#[derive(Debug, Clone)]
pub struct Pauses {
    backoff: Backoff,
    attempt: u32,
}

impl Pauses {
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl Iterator for Pauses {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        Some(self.backoff.pause(self.attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let pauses: Vec<u64> = (1..=7).map(|a| backoff.pause(a).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 60, 60]);
        let mut iter = backoff.iter();
        assert_eq!(iter.next(), Some(Duration::from_secs(2)));
        assert_eq!(iter.next(), Some(Duration::from_secs(4)));
        iter.reset();
        assert_eq!(iter.next(), Some(Duration::from_secs(2)));
        assert_eq!(Backoff::new(Duration::from_secs(1), Duration::from_secs(3600)).pause(u32::MAX), Duration::from_secs(3600));
    }
}
