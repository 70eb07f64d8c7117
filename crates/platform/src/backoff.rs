//! Exponential back-off: the one rule for redelivery delays, waits on a dependency at start and
//! restarts of a failed task.

use std::time::Duration;

/// The wait before attempt number `attempt + 1` after `attempt` failures (1-based): `base`,
/// doubling per failure, at most `max`.
pub fn delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    base.saturating_mul(2u32.saturating_pow(exponent)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_and_stops_at_the_cap() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(delay(base, max, 0), base);
        assert_eq!(delay(base, max, 1), base);
        assert_eq!(delay(base, max, 2), Duration::from_secs(1));
        assert_eq!(delay(base, max, 3), Duration::from_secs(2));
        assert_eq!(delay(base, max, 30), max);
        assert_eq!(delay(base, max, u32::MAX), max);
    }
}
