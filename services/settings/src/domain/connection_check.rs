//! S2: the connection check as the rules see it: its outcomes, the record of the last check
//! (bound to the credentials revision it was made with), and whether it allows enabling.

use wmslink_proto::settings::v1 as pb;
use wmslink_wms_client::ConnectionStatus;

use super::model::Blocker;

/// The outcome of a connection check, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Ok,
    Unauthorized,
    Unreachable,
    Tls,
    Timeout,
    RateLimited,
    UnexpectedAnswer,
    RefusedByPolicy,
}

impl CheckOutcome {
    pub const ALL: [Self; 8] = [
        Self::Ok,
        Self::Unauthorized,
        Self::Unreachable,
        Self::Tls,
        Self::Timeout,
        Self::RateLimited,
        Self::UnexpectedAnswer,
        Self::RefusedByPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::UnexpectedAnswer => "unexpected_answer",
            Self::RefusedByPolicy => "refused_by_policy",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == raw)
    }

    pub fn to_proto(self) -> pb::ConnectionCheckOutcome {
        use pb::ConnectionCheckOutcome as P;
        match self {
            Self::Ok => P::Ok,
            Self::Unauthorized => P::Unauthorized,
            Self::Unreachable => P::Unreachable,
            Self::Tls => P::Tls,
            Self::Timeout => P::Timeout,
            Self::RateLimited => P::RateLimited,
            Self::UnexpectedAnswer => P::UnexpectedAnswer,
            Self::RefusedByPolicy => P::RefusedByPolicy,
        }
    }
}

impl From<ConnectionStatus> for CheckOutcome {
    fn from(status: ConnectionStatus) -> Self {
        match status {
            ConnectionStatus::Ok => Self::Ok,
            ConnectionStatus::Unauthorized => Self::Unauthorized,
            ConnectionStatus::Unreachable => Self::Unreachable,
            ConnectionStatus::Tls => Self::Tls,
            ConnectionStatus::Timeout => Self::Timeout,
            ConnectionStatus::RateLimited => Self::RateLimited,
            ConnectionStatus::UnexpectedAnswer => Self::UnexpectedAnswer,
            ConnectionStatus::RefusedByPolicy => Self::RefusedByPolicy,
        }
    }
}

/// The last connection check, bound to the credentials revision it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub outcome: CheckOutcome,
    pub detail: String,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub credentials_rev: i64,
}

/// Why the connection check does not allow enabling, if it does not.
pub fn check_blocker(check: Option<&CheckRecord>, credentials_rev: i64) -> Option<Blocker> {
    const SUBJECT: &str = "last_connection_check";
    match check {
        None => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            "no connection check has been made with the stored access key and endpoint URL; run CheckConnection first",
        )),
        Some(check) if check.credentials_rev != credentials_rev => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            "the access key or endpoint URL changed after the last connection check; run CheckConnection again",
        )),
        Some(check) if check.outcome != CheckOutcome::Ok => Some(Blocker::new(
            "CONNECTION_CHECK",
            SUBJECT,
            format!(
                "the last connection check failed ({}): {}",
                check.outcome.as_str(),
                check.detail
            ),
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_check_must_be_ok_and_current() {
        let at = chrono::Utc::now();
        let ok = CheckRecord {
            outcome: CheckOutcome::Ok,
            detail: "connected".into(),
            checked_at: at,
            credentials_rev: 2,
        };
        assert!(check_blocker(Some(&ok), 2).is_none());
        assert!(check_blocker(None, 2).is_some());
        assert!(
            check_blocker(Some(&ok), 3)
                .unwrap()
                .description
                .contains("changed")
        );
        let failed = CheckRecord {
            outcome: CheckOutcome::Unauthorized,
            ..ok
        };
        assert!(
            check_blocker(Some(&failed), 2)
                .unwrap()
                .description
                .contains("unauthorized")
        );
    }

    #[test]
    fn outcomes_round_trip_through_text() {
        for outcome in CheckOutcome::ALL {
            assert_eq!(CheckOutcome::parse(outcome.as_str()), Some(outcome));
        }
    }
}
