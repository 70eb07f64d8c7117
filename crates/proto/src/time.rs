//! The one conversion between protobuf `Timestamp` and `chrono::DateTime<Utc>`, used by every
//! service for event payloads, gRPC answers and stored times.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// A UTC time as a protobuf timestamp.
pub fn to_timestamp(at: DateTime<Utc>) -> Timestamp {
    crate::timestamp(at.timestamp(), at.timestamp_subsec_nanos())
}

/// A protobuf timestamp as a UTC time; `None` when it is not a valid one (nanos outside
/// `0..1_000_000_000`, or seconds outside what `chrono` represents).
pub fn from_timestamp(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_invalid_timestamps() {
        let at = DateTime::parse_from_rfc3339("2026-11-28T01:15:00.5Z")
            .map(|at| at.with_timezone(&Utc))
            .ok();
        let at = at.expect("a valid time");
        let ts = to_timestamp(at);
        assert_eq!((ts.seconds, ts.nanos), (1_795_828_500, 500_000_000));
        assert_eq!(from_timestamp(&ts), Some(at));
        for nanos in [-1, 1_000_000_000, 1_500_000_000] {
            let bad = Timestamp { seconds: 0, nanos };
            assert_eq!(from_timestamp(&bad), None, "nanos {nanos}");
        }
        let far = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(from_timestamp(&far), None);
    }
}
