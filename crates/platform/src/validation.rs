//! Field-level validation errors that become gRPC `INVALID_ARGUMENT` with every bad field, both
//! in the message (for people and logs) and as `google.rpc.BadRequest` details (for programs).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.violations.push((field.into(), reason.into()));
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
        self.violations
            .iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `Ok(())` when nothing was added, else `INVALID_ARGUMENT` listing every violation.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    pub fn into_status(self) -> Status {
        let mut details = ErrorDetails::new();
        for (field, reason) in &self.violations {
            details.add_bad_request_violation(field.clone(), reason.clone());
        }
        Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {}", self.summary()),
            details,
        )
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
}
