//! Field-level validation errors that become gRPC `INVALID_ARGUMENT` with every bad field, both
//! in the message (for people and logs) and as `google.rpc.BadRequest` details (for programs).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The most violations kept: a huge request (a 1 MiB list of bad codes) must not allocate
/// hundreds of MB of errors nor an answer larger than gRPC's header limit. The rest are counted.
pub const MAX_VIOLATIONS: usize = 100;
/// Bytes of fields and reasons carried as `google.rpc.BadRequest` (base64 in a header).
const DETAILS_BUDGET_BYTES: usize = 6 * 1024;
/// Bytes of the status message (percent-encoded in a header, so up to 3× for non-ASCII).
const MESSAGE_BUDGET_BYTES: usize = 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
    /// Violations found after [`MAX_VIOLATIONS`], counted but not kept.
    omitted: usize,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a violation; past [`MAX_VIOLATIONS`] it is only counted.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        if self.is_full() {
            self.omitted = self.omitted.saturating_add(1);
        } else {
            self.violations.push((field.into(), reason.into()));
        }
    }

    /// [`MAX_VIOLATIONS`] are kept: a validator may stop looking.
    pub fn is_full(&self) -> bool {
        self.violations.len() >= MAX_VIOLATIONS
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.violations
            .iter()
            .map(|(field, reason)| (field.as_str(), reason.as_str()))
    }

    /// A one-line summary: `field: reason; field: reason`.
    pub fn summary(&self) -> String {
        let mut summary = self
            .violations
            .iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        if self.omitted > 0 {
            summary.push_str(&format!(
                "; and {} more violations not listed",
                self.omitted
            ));
        }
        summary
    }

    /// `Ok(())` when nothing was added, else `INVALID_ARGUMENT` listing every violation.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    /// `INVALID_ARGUMENT` with the violations in the message and as `google.rpc.BadRequest`,
    /// both bounded so the status fits in HTTP/2 headers (16 KiB by default): violations past
    /// the budget are counted in a last entry with an empty field.
    pub fn into_status(self) -> Status {
        let mut details = ErrorDetails::new();
        let mut used = 0;
        let mut listed = 0;
        for (field, reason) in &self.violations {
            used += field.len() + reason.len();
            if used > DETAILS_BUDGET_BYTES {
                break;
            }
            details.add_bad_request_violation(field.clone(), reason.clone());
            listed += 1;
        }
        let unlisted = self.violations.len() - listed + self.omitted;
        if unlisted > 0 {
            details.add_bad_request_violation("", format!("{unlisted} more violations not listed"));
        }
        let mut message = format!("invalid request: {}", self.summary());
        if message.len() > MESSAGE_BUDGET_BYTES {
            let mut end = MESSAGE_BUDGET_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(&format!(
                " … ({} violations in all)",
                self.violations.len() + self.omitted
            ));
        }
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

/// Reads the field violations back from a status (for clients and tests).
pub fn violations_of(status: &Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_violation_in_message_and_details() {
        let mut violations = FieldViolations::new();
        violations.add("a", "must be set");
        violations.add("b.c", "out of range");
        let status = violations.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("a: must be set"));
        assert!(status.message().contains("b.c: out of range"));
        assert_eq!(
            violations_of(&status),
            vec![
                ("a".to_owned(), "must be set".to_owned()),
                ("b.c".to_owned(), "out of range".to_owned())
            ]
        );
    }

    #[test]
    fn stops_collecting_after_the_bound() {
        let mut violations = FieldViolations::new();
        for index in 0..100_000 {
            violations.add(format!("codes[{index}]"), "unknown code");
        }
        assert!(violations.is_full());
        assert_eq!(violations.iter().count(), MAX_VIOLATIONS);
        let summary = violations.summary();
        assert!(
            summary.ends_with("; and 99900 more violations not listed"),
            "{}",
            &summary[summary.len() - 60..]
        );
        let status = violations.into_status();
        let listed = violations_of(&status);
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            listed.last().map(|(f, r)| (f.as_str(), r.as_str())),
            Some(("", "99900 more violations not listed"))
        );
        assert!(status.message().len() < 1_200);
        assert!(status.message().ends_with("(100000 violations in all)"));

        // Long reasons: the details stay within their budget.
        let mut violations = FieldViolations::new();
        for index in 0..MAX_VIOLATIONS {
            violations.add(format!("codes[{index}]"), "x".repeat(500));
        }
        let listed = violations_of(&violations.into_status());
        assert!(listed.len() < 20, "{}", listed.len());
        assert!(listed.last().is_some_and(|(field, _)| field.is_empty()));
    }
}
