//! What can go wrong, and the exit code each kind of failure gives (scripts rely on them; the
//! README lists them).

use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

/// Exit codes. Usage errors exit 2 (clap's own).
pub mod exit {
    pub const OK: i32 = 0;
    /// Anything not listed below (an internal error of a service, a bug).
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    /// Refused: a failed precondition (enable refused, R4 lock, not enabled), a stale version,
    /// a connection check that did not pass.
    pub const REFUSED: i32 = 4;
    /// Invalid input: every bad field is listed.
    pub const INVALID: i32 = 5;
    /// No token, a bad token, or a token without the scope.
    pub const AUTH: i32 = 6;
    /// A service cannot be reached (or timed out).
    pub const UNAVAILABLE: i32 = 7;
}

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A gRPC call answered with an error status.
    #[error("{service}: {message}")]
    Rpc {
        service: &'static str,
        code: Code,
        message: String,
        /// `google.rpc.BadRequest`: (field, reason).
        fields: Vec<(String, String)>,
        /// `google.rpc.PreconditionFailure`: (subject, description).
        preconditions: Vec<(String, String)>,
    },
    /// A service could not be reached at all.
    #[error("{service} at {url} cannot be reached: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    /// Bad input caught before any call (a settings file, a date); every problem listed.
    #[error("{what}")]
    Invalid {
        what: String,
        fields: Vec<(String, String)>,
    },
    /// The call worked but the answer is a refusal (e.g. a connection check that failed).
    #[error("{0}")]
    Refused(String),
    /// No token configured, or other set-up trouble.
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn rpc(service: &'static str, status: tonic::Status) -> Self {
        let details = status.get_error_details();
        let fields = details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| (v.field.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let preconditions = details
            .precondition_failure()
            .map(|failure| {
                failure
                    .violations
                    .iter()
                    .map(|v| (v.subject.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self::Rpc {
            service,
            code: status.code(),
            message: status.message().to_owned(),
            fields,
            preconditions,
        }
    }

    pub fn invalid(what: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            fields: Vec::new(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Rpc { code, .. } => match code {
                Code::NotFound => exit::NOT_FOUND,
                Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => exit::REFUSED,
                Code::InvalidArgument | Code::OutOfRange => exit::INVALID,
                Code::Unauthenticated | Code::PermissionDenied => exit::AUTH,
                Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
                _ => exit::OTHER,
            },
            Self::Unreachable { .. } => exit::UNAVAILABLE,
            Self::Invalid { .. } => exit::INVALID,
            Self::Refused(_) => exit::REFUSED,
            Self::Auth(_) => exit::AUTH,
            Self::Other(_) => exit::OTHER,
        }
    }

    /// A short name of the kind of failure, the `error.kind` of `--json` output.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            exit::NOT_FOUND => "not_found",
            exit::REFUSED => "refused",
            exit::INVALID => "invalid_argument",
            exit::AUTH => "unauthenticated",
            exit::UNAVAILABLE => "unavailable",
            _ => "error",
        }
    }

    fn fields(&self) -> &[(String, String)] {
        match self {
            Self::Rpc { fields, .. } | Self::Invalid { fields, .. } => fields,
            _ => &[],
        }
    }

    fn preconditions(&self) -> &[(String, String)] {
        match self {
            Self::Rpc { preconditions, .. } => preconditions,
            _ => &[],
        }
    }

    /// For people: the message, then one line per bad field or failed precondition.
    pub fn human(&self) -> String {
        let mut out = format!("wmsctl: {self}");
        if let Self::Rpc { code, .. } = self {
            out.push_str(&format!(" [{code:?}]"));
        }
        for (field, reason) in self.fields() {
            out.push_str(&format!("\n  - {field}: {reason}"));
        }
        for (subject, description) in self.preconditions() {
            if subject.is_empty() {
                out.push_str(&format!("\n  - {description}"));
            } else {
                out.push_str(&format!("\n  - {subject}: {description}"));
            }
        }
        out
    }

    /// For scripts (`--json`): `{"error": {kind, exit_code, code, message, fields, preconditions}}`.
    pub fn json(&self) -> Value {
        let code = match self {
            Self::Rpc { code, .. } => format!("{code:?}"),
            Self::Unreachable { .. } => "Unavailable".to_owned(),
            _ => String::new(),
        };
        let pairs = |pairs: &[(String, String)], a: &str, b: &str| -> Vec<Value> {
            pairs.iter().map(|(x, y)| json!({ a: x, b: y })).collect()
        };
        json!({
            "error": {
                "kind": self.kind(),
                "exit_code": self.exit_code(),
                "grpc_code": code,
                "message": self.to_string(),
                "fields": pairs(self.fields(), "field", "reason"),
                "preconditions": pairs(self.preconditions(), "subject", "description"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_documented_exit_codes() {
        let code_of = |code| CliError::rpc("x", tonic::Status::new(code, "m")).exit_code();
        assert_eq!(code_of(Code::NotFound), 3);
        assert_eq!(code_of(Code::FailedPrecondition), 4);
        assert_eq!(code_of(Code::Aborted), 4);
        assert_eq!(code_of(Code::InvalidArgument), 5);
        assert_eq!(code_of(Code::Unauthenticated), 6);
        assert_eq!(code_of(Code::PermissionDenied), 6);
        assert_eq!(code_of(Code::Unavailable), 7);
        assert_eq!(code_of(Code::Internal), 1);
    }
}
